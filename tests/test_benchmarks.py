"""The known-answer benchmark runs end to end at a tiny size and prints its table (it is run by hand at full size)."""

import importlib
import re
from pathlib import Path

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
