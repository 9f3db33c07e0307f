"""GPU benchmark: the many-runs engine at reference size, and the projected wall time of the reference study.

On the memory-task-shaped data of ``bench_engine.py`` (reference size: GRU hidden 512, 200 time
points per trial, episodes of 4-20 trials, batch size 1, dropout 0.3, contrastive transfer), it
measures run-epochs per second of

- baseline: one run at a time with ``torch.nn.GRU`` (cuDNN on CUDA), autograd and
  ``torch.optim.Adam`` (``bench_engine.baseline_epoch``);
- engine: :func:`b2m_neuro.engine.fit_runs` on R runs at once, for R = 1, 16, 64, 320 (a lone run
  on CUDA uses cuDNN's ``nn.GRU`` inside the engine too);

on ``--episodes`` training episodes and a proportional share of the 1,000 test sequences, and
projects the reference study from the fastest rate: 220 B2M + 100 L2 runs x 150 epochs, each epoch
over the 17 sessions x 400 trials (about 567 episodes of 12 trials) and 1,000 test sequences.
The reference took 14 h on one GPU for this part.

    .venv/bin/python benchmarks/bench_gpu.py                      # CUDA, reference size (< 8 minutes)
    .venv/bin/python benchmarks/bench_gpu.py --small --device cpu # tiny sizes, any machine (the tests run this)
"""

from __future__ import annotations

import argparse

import torch
from bench_engine import N_INPUTS, baseline_rate, engine_rate, memory_like_data

from b2m_neuro.engine import auto_group_size

REFERENCE = {"runs": 220 + 100, "epochs": 150, "episodes": 17 * 400 / 12, "test": 1000}


def projected_hours(rate: float, episodes: int) -> float:
    """Hours of the reference study at ``rate`` run-epochs per second measured on ``episodes`` episodes."""
    run_epochs = REFERENCE["runs"] * REFERENCE["epochs"] * REFERENCE["episodes"] / episodes
    return run_epochs / rate / 3600


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny sizes (hidden 16, 4 points, R = 1, 2) for a quick check")
    parser.add_argument("--episodes", type=int, default=8, help="training episodes per measured epoch (default 8)")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 16, 64, 320], help="R values of the engine")
    parser.add_argument("--baseline-runs", type=int, default=2, help="sequential run-epochs timed for the baseline")
    args = parser.parse_args(argv)
    hidden, points, counts = (16, 4, [1, 2]) if args.small else (512, 200, args.runs)
    n_test = max(1, round(REFERENCE["test"] * args.episodes / REFERENCE["episodes"]))
    data = memory_like_data(episodes=args.episodes, points=points, n_test=n_test)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"{name}, torch {torch.__version__}: hidden {hidden}, {points} points per trial, {args.episodes} episodes "
          f"(mean {data.train_lengths.mean():.0f} steps), {n_test} test sequences per epoch", flush=True)
    warm = memory_like_data(episodes=2, points=2, n_test=2)
    baseline_rate(warm, 8, 1, args.device), engine_rate(warm, 8, 2, args.device)  # first-call costs left out
    baseline = baseline_rate(data, hidden, args.baseline_runs, args.device)[0]  # wall clock
    print(f"baseline (one nn.GRU run at a time): {baseline:.3f} run-epochs/s; reference study "
          f"{projected_hours(baseline, args.episodes):.1f} h", flush=True)
    print(f"{'R':>5} {'group':>6} {'run-epochs/s':>13} {'vs baseline':>12} {'study (h)':>10}")
    best = baseline
    for n_runs in counts:
        group = auto_group_size(hidden, N_INPUTS, device=args.device, n_runs=n_runs,
                                max_steps=int(data.train_lengths.max()))
        rate = engine_rate(data, hidden, n_runs, args.device)[0]
        best = max(best, rate)
        print(f"{n_runs:>5} {group:>6} {rate:>13.3f} {rate / baseline:>11.2f}x "
              f"{projected_hours(rate, args.episodes):>10.2f}", flush=True)
    print(f"projected reference study ({REFERENCE['runs']} runs x {REFERENCE['epochs']} epochs) at the best rate: "
          f"{projected_hours(best, args.episodes):.2f} h (the reference: 14 h)")
    if args.small:
        print("(--small checks that the benchmark runs; the projections mean something at the reference size only)")


if __name__ == "__main__":
    main()
