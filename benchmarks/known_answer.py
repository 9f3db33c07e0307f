"""Known-answer benchmark: does brain guidance help when the teacher carries the hidden goal?

The full pipeline on the built-in simulated teacher: ``simulate.memory_sessions`` ->
``convert.spikes_to_nwb`` -> ``adapters.load_spikes`` (paper spec) -> ``embed`` (PCA) ->
``Derivative`` -> ``train``. Per seed (which fixes the session, the initial weights and the episode
order in every condition) it trains the same small GRU in four conditions:

- ``b2m``: brain guidance from the teacher that carries the goal (alpha = ``--alpha``);
- ``alpha0``: no brain guidance (alpha = 0);
- ``shuffled``: brain guidance with the embedding shuffled along trials;
- ``no_info``: brain guidance from a teacher simulated with ``goal_information=False``;

and prints, per condition, the area under the test-accuracy curve (the primary measure; the
time-averaged accuracy) and the final accuracy, with one-sided Mann-Whitney U p-values for
b2m > each other condition. A dose-response over teacher strength (goal and match gains from 0 up)
prints the paired AUC benefit of b2m over alpha0 at each gain.

Small settings so that it fits a CPU: GRU 64, lr 3e-3, mean cosine InfoNCE (PCA embeddings are in
arbitrary units, so the cosine variant keeps the similarity scale fixed), one session of ~40
episodes, two time points per trial (``--time-stride 100``: the last pre-stimulus point and the
response point). Run ``python benchmarks/known_answer.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def teacher(folder: Path, *, seed: int, args: argparse.Namespace, **simulation) -> object:
    """Simulate one session and take it through NWB, the spike adapter and PCA into a derivative."""
    from b2m_neuro.adapters import load_spikes
    from b2m_neuro.convert import spikes_to_nwb
    from b2m_neuro.derivative import Derivative
    from b2m_neuro.embedding import embed
    from b2m_neuro.simulate import memory_sessions

    folder.mkdir(parents=True)
    recordings = memory_sessions(1, seed=seed, n_trials=args.trials, progress=False, **simulation)
    files = [spikes_to_nwb(recording, folder / f"session{i}.nwb") for i, recording in enumerate(recordings)]
    rates = [load_spikes(file, "paper", progress=False) for file in files]
    embedded = embed(rates, method="pca", output_dimension=args.latent, seed=seed, progress=False)
    return Derivative.create(folder / "derivative", embedded, method="pca",
                             params=embedded[0].attrs["embedding_params"], source_datasets=files, progress=False)


def run(derivative: object, *, seed: int, alpha: float, args: argparse.Namespace, control: str | None = None):
    from b2m_neuro.training import train

    return train(derivative, alpha=alpha, control=control, seed=seed, epochs=args.epochs, lr=args.lr,
                 transfer=args.transfer, hidden_size=args.hidden, time_stride=args.time_stride,
                 n_test=args.n_test, progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--gains", type=float, nargs="*", default=[0.0, 0.5, 1.0, 2.0],
                        help="teacher goal/match gains for the dose-response (none: skip it)")
    parser.add_argument("--dose-seeds", type=int, default=None, help="seeds for the dose-response (default --seeds)")
    parser.add_argument("--trials", type=int, default=480, help="trials in the session (~40 episodes)")
    parser.add_argument("--latent", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--transfer", default="contrastive-cosine")
    parser.add_argument("--time-stride", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=1000)
    args = parser.parse_args(argv)

    import torch

    from b2m_neuro.stats import final_metric, mann_whitney_greater, trajectory_auc

    torch.set_num_threads(1)  # tiny GRUs: one thread is fastest, and the CPU is shared
    start = time.perf_counter()
    conditions = ("b2m", "alpha0", "shuffled", "no_info")
    curves = {name: [] for name in conditions}
    loss_ratio, baseline = [], []
    dose_seeds = range(args.dose_seeds if args.dose_seeds is not None else args.seeds)
    dose = {gain: [] for gain in args.gains if gain != 1.0}
    with tempfile.TemporaryDirectory(prefix="b2m-known-answer-") as tmp:
        for seed in range(args.seeds):
            informed = teacher(Path(tmp) / f"seed{seed}", seed=seed, args=args)
            blind = teacher(Path(tmp) / f"seed{seed}-noinfo", seed=seed, args=args, goal_information=False)
            results = {
                "b2m": run(informed, seed=seed, alpha=args.alpha, args=args),
                "alpha0": run(informed, seed=seed, alpha=0.0, args=args),
                "shuffled": run(informed, seed=seed, alpha=args.alpha, args=args, control="shuffled"),
                "no_info": run(blind, seed=seed, alpha=args.alpha, args=args),
            }
            for name, result in results.items():
                curves[name].append(result.history.test_accuracy.values)
            first = results["alpha0"].history.isel(epoch=0)
            loss_ratio.append(float(first.task_loss / (first.task_loss + first.transfer_loss)))
            baseline.append(results["alpha0"].config["n_train_sequences"])
            for gain in dose if seed in dose_seeds else ():
                graded = teacher(Path(tmp) / f"seed{seed}-gain{gain}", seed=seed, args=args, goal_gain=gain,
                                 match_gain=gain)
                dose[gain].append(run(graded, seed=seed, alpha=args.alpha, args=args).history.test_accuracy.values)
            print(f"seed {seed}: AUC " + ", ".join(f"{name} {trajectory_auc(curves[name][-1]):.3f}" for name in conditions)
                  + f"  ({time.perf_counter() - start:.0f} s)", flush=True)

    auc = {name: trajectory_auc(np.array(values)) for name, values in curves.items()}
    final = {name: final_metric(np.array(values), last=5) for name, values in curves.items()}
    print(f"\nknown answer: {args.seeds} paired seeds, {args.epochs} epochs, GRU {args.hidden}, lr {args.lr}, "
          f"alpha {args.alpha}, {args.transfer}, ~{np.mean(baseline):.0f} training episodes, {args.n_test} test sequences")
    print(f"{'condition':<10} {'AUC mean':>9} {'sem':>6} {'p(b2m>)':>8}   {'final mean':>10} {'sem':>6} {'p(b2m>)':>8}")
    for name in conditions:
        auc_p = mann_whitney_greater(auc["b2m"], auc[name])[1] if name != "b2m" else float("nan")
        final_p = mann_whitney_greater(final["b2m"], final[name])[1] if name != "b2m" else float("nan")
        print(f"{name:<10} {auc[name].mean():>9.3f} {_sem(auc[name]):>6.3f} {auc_p:>8.4f}   "
              f"{final[name].mean():>10.3f} {_sem(final[name]):>6.3f} {final_p:>8.4f}")
    alpha0 = np.array(curves["alpha0"])
    print(f"alpha0 baseline: test accuracy {alpha0[:, 0].mean():.3f} after epoch 1 -> {alpha0[:, -1].mean():.3f} "
          f"after epoch {args.epochs} (ceiling 1.0)")
    print(f"loss balance: (1 - alpha) L_task = alpha L_transfer at alpha = {np.mean(loss_ratio):.3f} "
          f"(first epoch of the alpha0 runs: task / (task + transfer))")
    if dose:
        print("\ndose-response: AUC benefit of b2m over alpha0 (paired seeds) per teacher gain (goal = match gain)")
        gains = {**dose, 1.0: curves["b2m"][: len(dose_seeds)]}
        for gain in sorted(gains):
            benefit = trajectory_auc(np.array(gains[gain])) - auc["alpha0"][: len(gains[gain])]
            print(f"gain {gain:>4.1f}: benefit {benefit.mean():+.3f} +- {_sem(benefit):.3f} (n={len(benefit)})")
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")


def _sem(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


if __name__ == "__main__":
    main()
