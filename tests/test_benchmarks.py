"""The benchmarks run end to end at tiny sizes on the CPU (they are run by hand at full size, the GPU ones on a GPU)."""

import importlib
import re
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def test_known_answer_prints_every_condition_with_its_statistics(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # importable by name, so its worker processes can unpickle it
    known_answer = importlib.import_module("known_answer")
    known_answer.main(["--seeds", "2", "--first-seed", "3", "--epochs", "2", "--alphas", "0.1", "0.5", "--alpha", "0.1",
                       "--gains", "0", "1", "--negatives", "8", "--trials", "60", "--n-test", "20", "--workers", "1"])
    printed = capsys.readouterr().out
    assert "seed 3: AUC alpha0" in printed and "seed 4: AUC alpha0" in printed
    for name in ("alpha0", "b2m 0.1", "b2m 0.5", "no_info 0.1", "shuffled 0.5", "gain 0", "gain 1", "b2m+neg 0.1",
                 "no_info+neg 0.1"):
        assert re.search(rf"^{re.escape(name)}\s+[01]\.\d{{3}}\s", printed, re.MULTILINE), name
    assert re.search(r"b2m 0\.1\s+0\.\d{3}\s+0\.\d{3}\s+0\.\d{4}", printed)  # AUC mean, sem, p > alpha0
    assert "teacher goal decodability" in printed and "b2m+neg > no_info+neg" in printed


def test_gpu_check_passes_on_the_cpu(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    gpu_check = importlib.import_module("gpu_check")
    assert gpu_check.main(["--device", "cpu", "--hidden", "16"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("PASS") == 3 and "FAIL" not in printed


def test_gpu_benchmark_runs_at_small_size_on_the_cpu(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_gpu = importlib.import_module("bench_gpu")
    bench_gpu.main(["--small", "--device", "cpu", "--episodes", "3", "--baseline-runs", "1"])
    printed = capsys.readouterr().out
    assert re.search(r"baseline \(one nn.GRU run at a time\): [\d.]+ run-epochs/s", printed)
    assert re.search(r"^\s+2\s+\d+\s+[\d.]+\s+[\d.]+x", printed, re.MULTILINE)  # R = 2: rate and ratio
    assert "projected reference study (320 runs x 150 epochs)" in printed
    # 320 runs x 150 epochs x 566.7 episodes at 1 run-epoch per second on 8 episodes
    assert bench_gpu.projected_hours(1.0, 8) == pytest.approx(320 * 150 * (17 * 400 / 12) / 8 / 3600)


def test_vae_benchmark_runs_at_small_size_on_the_cpu(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_vae = importlib.import_module("bench_vae")
    bench_vae.main(["--small", "--device", "cpu", "--runs", "1", "2", "--steps", "1", "--batch", "4", "--pair-batch", "8"])
    printed = capsys.readouterr().out
    assert re.search(r"^\s+2\s+[\d.]+ im/s\s+[\d.]+ im/s\s+[\d.]+x", printed, re.MULTILINE)  # R = 2: rates and ratio
    # 220 runs x 100 epochs x 12,000 scenes at 1,000 scenes per second
    assert bench_vae.projected_hours(1000.0) == pytest.approx(220 * 100 * 12_000 / 1000 / 3600)


def test_cebra_benchmark_compares_both_label_searches_at_small_size(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_cebra = importlib.import_module("bench_cebra")
    bench_cebra.main(["--sessions", "2", "--trials", "20", "--steps", "5", "--curve", "3", "--batch-size", "32",
                     "--learning-rate", "1e-3"])
    printed = capsys.readouterr().out
    assert "batch 32, learning rate 0.001;" in printed
    for search in ("distinct", "cebra"):
        assert re.search(rf"^\s+{search}\s+5\s+[\d.]+\s+[\d.]+ \| loss [\d.]+ \| consistency", printed, re.MULTILINE), search
    assert "largest difference between the two embeddings: 0\n" in printed  # the same training, step for step
    assert re.search(r"^\s+distinct\s+3\s", printed, re.MULTILINE)


def test_engine_benchmark_pairs_each_engine_row_with_a_baseline(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_engine = importlib.import_module("bench_engine")
    bench_engine.main(["--runs", "1", "2", "--hidden", "8", "--episodes", "3", "--points", "2", "--test", "4",
                       "--baseline-runs", "1", "--repeat", "2", "--threads", "1"])
    printed = capsys.readouterr().out
    rows = re.findall(r"^\s+8\s+([12])\s+\d+ \|\s+[\d.]+\s+[\d.]+\s+([\d.]+)x", printed, re.MULTILINE)
    assert [runs for runs, _ in rows] == ["1", "2", "1", "2"]  # R = 1 and 2, measured twice
    medians = re.findall(r"^\s+8\s+([12])\s+([\d.]+)x  \(([\d.]+), ([\d.]+)\)$", printed, re.MULTILINE)
    assert [m[0] for m in medians] == ["1", "2"]
    for runs, median, first, second in medians:  # the median of the two paired ratios printed above
        assert float(median) == pytest.approx((float(first) + float(second)) / 2, abs=0.006)
        assert {first, second} == {ratio for r, ratio in rows if r == runs}
