"""Correctness of the training paths on a device (CUDA by default), in under two minutes.

1. Batched == one at a time: four different runs (seeds, alphas, transfer losses, negatives)
   trained together by :func:`b2m_neuro.engine.fit_runs` give the histories they get alone.
2. The lone-run path: a single run on CUDA goes through cuDNN's ``nn.GRU`` (``backend="auto"``)
   and must match the hand-written stacked GRU (``backend="stacked"``).
3. ``b2m_neuro.train`` on the device: a short run from a simulated derivative is finite and
   matches the same run on the CPU.

Each check prints its largest deviation and PASS or FAIL; the exit status is 1 if any failed.

    .venv/bin/python benchmarks/gpu_check.py                # CUDA
    .venv/bin/python benchmarks/gpu_check.py --device cpu   # any machine (the tests run this)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import torch
from bench_engine import config, memory_like_data, student

from b2m_neuro.engine import Run, fit_runs

MEASURES = ("task_loss", "transfer_loss", "test_loss", "test_accuracy")


def deviation(histories, references) -> float:
    """Largest relative deviation over the measures of paired histories."""
    worst = 0.0
    for history, reference in zip(histories, references):
        for name in MEASURES:
            a, b = history[name].values, reference[name].values
            worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6))))
    return worst


def runs(data, device: str, hidden: int) -> list[Run]:
    settings = [dict(alpha=0.0), dict(alpha=0.1, transfer="latent"), dict(alpha=0.5, transfer="contrastive-cosine"),
                dict(alpha=0.2, transfer="contrastive-cosine", negatives=16)]
    return [Run(data, student(hidden, seed, device), dataclasses.replace(config(seed), epochs=3, **changes))
            for seed, changes in enumerate(settings)]


def check_batched(data, device: str, hidden: int) -> float:
    together = [history for history, _ in fit_runs(runs(data, device, hidden), device=device, progress=False)]
    alone = [fit_runs([run], device=device, progress=False)[0][0] for run in runs(data, device, hidden)]
    return deviation(together, alone)


def check_lone_run(data, device: str, hidden: int) -> float:
    auto = fit_runs(runs(data, device, hidden)[1:2], device=device, backend="auto", progress=False)[0][0]
    stacked = fit_runs(runs(data, device, hidden)[1:2], device=device, backend="stacked", progress=False)[0][0]
    return deviation([auto], [stacked])


def check_train(device: str) -> float:
    import xarray as xr

    from b2m_neuro.simulate import memory_session
    from b2m_neuro.training import train

    trials = memory_session(seed=0, n_trials=60, n_units=4).trials
    embedding = np.random.default_rng(0).normal(size=(len(trials), 2, 3)).astype(np.float32)
    session = xr.Dataset({"embedding": (("trial", "time", "latent"), embedding),
                          **{name: ("trial", trials[name].to_numpy()) for name in
                             ("stimulus", "first_target", "second_target", "current_target", "episode")}},
                         coords={"time": [-0.5, 0.5]})
    options = dict(alpha=0.1, epochs=3, hidden_size=32, lr=3e-3, n_test=50, transfer="contrastive-cosine", progress=False)
    on_device, on_cpu = train([session], device=device, **options), train([session], device="cpu", **options)
    if not np.isfinite(on_device.history["test_loss"].values).all():
        return float("inf")
    return deviation([on_device.history], [on_cpu.history])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest relative deviation allowed")
    args = parser.parse_args(argv)
    data = memory_like_data(episodes=6, points=6, n_test=20)
    checks = {"batched == one at a time": lambda: check_batched(data, args.device, args.hidden),
              "lone run: auto backend == stacked GRU": lambda: check_lone_run(data, args.device, args.hidden),
              f"train() on {args.device} == on cpu": lambda: check_train(args.device)}
    failed = 0
    for name, check in checks.items():
        worst = check()
        ok = worst <= args.tolerance
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name}: largest relative deviation {worst:.2e} (tolerance {args.tolerance:g})",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
