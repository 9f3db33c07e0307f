"""CEBRA teacher on a CPU: CEBRA's own nearest-label search vs the distinct-label search, and the quality they reach.

The demo-size teacher: ``--sessions`` simulated memory-task sessions of ``--trials`` trials
(``b2m_neuro.simulate.memory_sessions``), written as NWB and read with the ``paper`` spec (200
time bins per trial), embedded by multi-session CEBRA with the reference settings
(``offset10-model``, ``time_delta`` conditioning on time within trial, batch 512, 7 latents).

- slow path: ``embed(..., label_search="cebra")``, CEBRA's search, which compares every query label
  with every sample's label (48,000 per session);
- fast path: ``embed(..., label_search="distinct")`` (the default), which compares it with the 200
  distinct labels only and returns the same sample.

Both train ``--steps`` steps from the same seed; the script prints their wall time and steps per
second, the largest difference between their embeddings, and for each CEBRA's final training loss
(``attrs["embedding_loss"]``, the mean over the last 100 steps) and the teacher's quality
(:func:`b2m_neuro.embedding.quality.teacher_quality`): cross-session consistency and how well the hidden goal
decodes (balanced accuracy, chance 0.5) before and after the stimulus and from the whole trial.
Then the fast path alone at the ``--curve`` step counts, to show where the quality levels off.

    .venv/bin/python benchmarks/bench_cebra.py --threads 2 --curve 1000
    .venv/bin/python benchmarks/bench_cebra.py --threads 2 --batch-size 128 --learning-rate 1e-3 --curve 800 2400
    .venv/bin/python benchmarks/bench_cebra.py --steps 30 --curve --sessions 2 --trials 40   # a quick look

The first is the reference settings; the second the CPU recipe, two of CEBRA's own options: a
batch of 128 makes a step about 3x cheaper, and a learning rate of 1e-3 lets the quality level off
in fewer steps (where the curve stops changing, the teacher has converged for this use).
On a CPU shared with other work, ``--threads 1`` is the steadier choice: CEBRA's small
convolutions gain little from a second thread and lose much when that core is busy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from b2m_neuro import embed, load_spikes
from b2m_neuro.embedding.quality import teacher_quality
from b2m_neuro.convert import spikes_to_nwb
from b2m_neuro.simulate import memory_sessions


def demo_teacher(sessions: int, trials: int, folder: Path) -> list:
    """The simulated sessions as the spike adapter reads them (``paper`` spec)."""
    recordings = memory_sessions(sessions, n_trials=trials, seed=0, progress=False)
    return [load_spikes(spikes_to_nwb(recording, folder / f"session-{index}.nwb"), "paper", progress=False)
            for index, recording in enumerate(recordings)]


def train(rates: list, steps: int, search: str, args: argparse.Namespace) -> tuple[list, float]:
    """CEBRA embeddings after ``steps`` steps, and the wall-clock seconds they took."""
    start = time.perf_counter()
    embedded = embed(rates, method="cebra", max_iterations=steps, batch_size=args.batch_size,
                     learning_rate=args.learning_rate, device="cpu", threads=args.threads, seed=0, progress=False,
                     label_search=search)
    return embedded, time.perf_counter() - start


def quality_line(embedded: list, permutations: int) -> str:
    """Mean consistency and the goal's decoding scores (mean over sessions), as printed."""
    report = teacher_quality(embedded, variables=["goal"], permutations=permutations)
    table = report.table().set_index("window")["score"]
    return (f"loss {embedded[0].attrs['embedding_loss']:.3f} | consistency {report.mean_consistency:6.3f} | "
            f"goal pre {table['pre']:.3f}  post {table['post']:.3f}  trial {table['trial']:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--trials", type=int, default=240)
    parser.add_argument("--steps", type=int, default=300, help="steps of both paths")
    parser.add_argument("--curve", type=int, nargs="*", default=[100, 1000], help="further step counts, fast path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512, help="CEBRA's batch size (512: the reference)")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="CEBRA's learning rate (3e-4: the reference)")
    parser.add_argument("--permutations", type=int, default=0, help="label permutations per p-value (0: none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        rates = demo_teacher(args.sessions, args.trials, Path(folder))
    print(f"teacher: {args.sessions} sessions x {args.trials} trials x {rates[0].sizes['time']} time bins "
          f"({', '.join(str(r.sizes['unit']) for r in rates)} units); batch {args.batch_size}, learning rate "
          f"{args.learning_rate:g}; {args.threads} threads; "
          f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    embed(rates[:1], method="cebra", max_iterations=2, batch_size=16, device="cpu", threads=args.threads,
          progress=False)  # warm-up: imports stay out of the timings
    results = {}
    print(f"{'search':>9} {'steps':>6} {'seconds':>8} {'steps/s':>8} | quality")
    for search in ("distinct", "cebra"):
        results[search], seconds = train(rates, args.steps, search, args)
        print(f"{search:>9} {args.steps:>6} {seconds:>8.1f} {args.steps / seconds:>8.2f} | "
              f"{quality_line(results[search], args.permutations)}", flush=True)
    difference = max(float(np.abs(a["embedding"].values - b["embedding"].values).max())
                     for a, b in zip(results["distinct"], results["cebra"]))
    print(f"largest difference between the two embeddings: {difference:g}")
    for steps in args.curve:
        embedded, seconds = train(rates, steps, "distinct", args)
        print(f"{'distinct':>9} {steps:>6} {seconds:>8.1f} {steps / seconds:>8.2f} | "
              f"{quality_line(embedded, args.permutations)}", flush=True)


if __name__ == "__main__":
    main()
