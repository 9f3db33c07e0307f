"""Known-answer benchmark: does brain guidance help when the teacher carries the hidden goal?

The full pipeline on the built-in simulated teacher, per seed (which fixes the simulated session,
the student's initial weights and the episode order in every condition):
``simulate.memory_session`` -> ``convert.spikes_to_nwb`` -> ``adapters.load_spikes`` (``--spec``,
the coarse preset by default) -> ``embed`` (PCA, or CEBRA with ``--embedding cebra``) ->
``train``, with these teachers and conditions:

- ``alpha0``: no brain guidance (alpha 0), the baseline;
- ``b2m``: the informative teacher (goal gain 1) at each alpha of ``--alphas``;
- ``no_info``: the same participant simulated with ``goal_information=False`` (no goal, match or
  response tuning), embedded the same way, at each alpha: **the primary contrast**;
- ``shuffled``: the informative teacher's embedding shuffled along trials, at each alpha;
- ``gain G``: teachers whose goal and match tuning are scaled by G (``--gains``), at ``--alpha``:
  the dose-response over teacher strength;
- ``b2m+neg`` and ``no_info+neg``: the informative and no-information teachers at ``--alpha`` with
  ``--negatives`` InfoNCE negatives drawn from other episodes each step (0: not run).

It prints, per seed as it comes out, the AUC of each condition and each teacher's goal
decodability (cross-validated balanced accuracy of the hidden goal, first vs second candidate,
from the pre-stimulus embedding); then one table of the area under the test-accuracy curve (the
primary measure: the time-averaged accuracy) and the final accuracy, mean and s.e.m. over seeds,
with one-sided Mann-Whitney U p-values (this row greater) against alpha 0, the shuffled control and
the no-information teacher at the same alpha. Seeds run in ``--workers`` processes, each training
its seed's runs together with the batched engine.

Small settings so that it fits a CPU: GRU 64, lr 3e-3, mean cosine InfoNCE over the pre-stimulus
points (``pair="pre"``, the default), one session of ~40 episodes, 40 epochs. Run
``python benchmarks/known_answer.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.5)
DEFAULT_GAINS = (0.0, 0.5, 1.0, 2.0)


def teacher(folder: Path, *, seed: int, args: argparse.Namespace, **simulation) -> object:
    """Simulate one session and take it through NWB, the spike adapter and the embedding into a derivative."""
    from b2m_neuro.adapters import load_spikes
    from b2m_neuro.convert import spikes_to_nwb
    from b2m_neuro.derivative import Derivative
    from b2m_neuro.embedding import embed
    from b2m_neuro.simulate import memory_session

    folder.mkdir(parents=True)
    recording = memory_session(seed=seed, n_trials=args.trials, n_units=args.units, **simulation)
    file = spikes_to_nwb(recording, folder / "session.nwb")
    rates = [load_spikes(file, args.spec, progress=False)]
    options = {"max_iterations": args.iterations, "conditional": args.conditional} if args.embedding == "cebra" else {}
    embedded = embed(rates, method=args.embedding, output_dimension=args.latent, seed=seed, progress=False,
                     threads=1, **options)
    return Derivative.create(folder / "derivative", embedded, method=args.embedding,
                             params=embedded[0].attrs["embedding_params"], source_datasets=[file], progress=False)


def goal_decodability(derivative: object) -> float:
    """Balanced accuracy of the hidden goal from the teacher's pre-stimulus embedding (teacher quality)."""
    from b2m_neuro.embedding import teacher_quality

    decoding = teacher_quality(derivative.datasets(), variables=["goal"], permutations=0).decoding
    return float(decoding.loc[decoding["window"] == "pre", "score"].mean())


def one_seed(seed: int, args: argparse.Namespace) -> dict:
    """Every condition of one seed, trained together: ``{condition: test-accuracy curve}`` and teacher quality."""
    import torch

    from b2m_neuro.engine import fit_runs
    from b2m_neuro.training import prepare_run

    torch.set_num_threads(1)  # tiny GRUs: one thread is fastest, and the CPU is shared
    options = dict(epochs=args.epochs, lr=args.lr, transfer=args.transfer, hidden_size=args.hidden,
                   n_test=args.n_test, pair=args.pair, seed=seed)
    with tempfile.TemporaryDirectory(prefix=f"b2m-known-answer-{seed}-") as tmp:
        teachers = {"informed": teacher(Path(tmp) / "informed", seed=seed, args=args),
                    "no_info": teacher(Path(tmp) / "no-info", seed=seed, args=args, goal_information=False)}
        for gain in args.gains:
            if gain != 1.0:
                teachers[f"gain {gain:g}"] = teacher(Path(tmp) / f"gain{gain}", seed=seed, args=args,
                                                     goal_gain=gain, match_gain=gain)
        cells = {"alpha0": prepare_run(teachers["informed"], alpha=0.0, **options)}
        for alpha in args.alphas:
            cells[f"b2m {alpha:g}"] = prepare_run(teachers["informed"], alpha=alpha, **options)
            cells[f"no_info {alpha:g}"] = prepare_run(teachers["no_info"], alpha=alpha, **options)
            cells[f"shuffled {alpha:g}"] = prepare_run(teachers["informed"], alpha=alpha, control="shuffled", **options)
        for gain in args.gains:
            if gain != 1.0:
                cells[f"gain {gain:g}"] = prepare_run(teachers[f"gain {gain:g}"], alpha=args.alpha, **options)
        if args.negatives:
            for name, derivative in (("b2m+neg", teachers["informed"]), ("no_info+neg", teachers["no_info"])):
                cells[f"{name} {args.alpha:g}"] = prepare_run(derivative, alpha=args.alpha, negatives=args.negatives,
                                                              **options)
        outcomes = fit_runs([prepared.run for prepared in cells.values()], device="cpu", progress=False)
        quality = {name: goal_decodability(derivative) for name, derivative in teachers.items()}
    curves = {name: history["test_accuracy"].values for name, (history, _) in zip(cells, outcomes)}
    if 1.0 in args.gains:  # the informative teacher is the gain-1 teacher
        curves["gain 1"] = curves[f"b2m {args.alpha:g}"]
    return {"curves": curves, "quality": quality, "n_train": cells["alpha0"].run_config["n_train_sequences"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=14, help="paired seeds (default 14)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one on (default 0)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS), help="B2M strengths (alpha 0 is always run)")
    parser.add_argument("--alpha", type=float, default=0.1, help="alpha of the teacher-strength dose-response")
    parser.add_argument("--gains", type=float, nargs="*", default=list(DEFAULT_GAINS),
                        help="teacher goal/match gains for the dose-response (none: skip it)")
    parser.add_argument("--trials", type=int, default=480, help="trials in the session (~40 episodes)")
    parser.add_argument("--units", type=int, default=None, help="units in the session (default: drawn, 10-40)")
    parser.add_argument("--spec", default="coarse", help="teacher spec preset or TOML (default coarse)")
    parser.add_argument("--embedding", default="pca", choices=["pca", "cebra"])
    parser.add_argument("--iterations", type=int, default=1500, help="CEBRA steps (--embedding cebra)")
    parser.add_argument("--conditional", default="time_delta", help="CEBRA conditional (--embedding cebra)")
    parser.add_argument("--latent", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--transfer", default="contrastive-cosine")
    parser.add_argument("--pair", default="pre", choices=["pre", "unscored", "all"])
    parser.add_argument("--negatives", type=int, default=256,
                        help="InfoNCE negatives from other episodes for the b2m+neg rows (0: skip them)")
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="processes, one seed each at a time (default 2)")
    args = parser.parse_args(argv)
    if args.gains and args.alpha not in args.alphas:
        parser.error("--alpha must be one of --alphas")

    start = time.perf_counter()
    print(f"known answer: {args.seeds} paired seeds, {args.epochs} epochs, GRU {args.hidden}, lr {args.lr}, "
          f"{args.transfer}, pair {args.pair}, spec {args.spec}, {args.embedding} {args.latent}-d, "
          f"{args.trials} trials, {args.n_test} test sequences", flush=True)
    seeds = []
    seed_range = range(args.first_seed, args.first_seed + args.seeds)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for seed, outcome in zip(seed_range, pool.map(one_seed, seed_range, [args] * args.seeds)):
            seeds.append(outcome)
            auc = {name: _auc(curve) for name, curve in outcome["curves"].items()}
            goal = ", ".join(f"{name} {score:.2f}" for name, score in outcome["quality"].items())
            print(f"seed {seed}: AUC alpha0 {auc['alpha0']:.3f}, "
                  + ", ".join(f"{name} {auc[name]:.3f}" for name in auc if name.startswith("b2m"))
                  + f", no_info {args.alpha:g} {auc[f'no_info {args.alpha:g}']:.3f}; goal decodability {goal}"
                  + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    print_table(seeds, args)
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")


def print_table(seeds: list[dict], args: argparse.Namespace) -> None:
    """The AUC / final-accuracy table over seeds, with one-sided p-values (row greater)."""
    from b2m_neuro.stats import final_metric, mann_whitney_greater, trajectory_auc

    names = list(seeds[0]["curves"])
    curves = {name: np.array([seed["curves"][name] for seed in seeds]) for name in names}
    measures = {"AUC": {n: trajectory_auc(c) for n, c in curves.items()},
                "final": {n: final_metric(c, last=5) for n, c in curves.items()}}
    print(f"\n~{np.mean([s['n_train'] for s in seeds]):.0f} training episodes per seed; "
          "p: one-sided Mann-Whitney U, this row greater than alpha0 / shuffled / no_info at the same alpha")
    header = f"{'condition':<16}"
    for measure in measures:
        header += f" {measure + ' mean':>10} {'sem':>6} {'p>alpha0':>9} {'p>shuf':>7} {'p>noinfo':>9}"
    print(header)
    for name in names:
        line = f"{name:<16}"
        alpha = name.split()[-1] if name.split()[0] in ("b2m", "no_info", "shuffled") else f"{args.alpha:g}"
        for values in measures.values():
            p = [mann_whitney_greater(values[name], values[reference])[1]
                 if name != "alpha0" and reference in values and reference != name else float("nan")
                 for reference in ("alpha0", f"shuffled {alpha}", f"no_info {alpha}")]
            line += f" {values[name].mean():>10.3f} {_sem(values[name]):>6.3f} {p[0]:>9.4f} {p[1]:>7.4f} {p[2]:>9.4f}"
        print(line)
    if args.negatives:
        auc, alpha = measures["AUC"], f"{args.alpha:g}"
        print(f"\nnegatives from other episodes ({args.negatives}), AUC, one-sided p: "
              f"b2m+neg > b2m {mann_whitney_greater(auc[f'b2m+neg {alpha}'], auc[f'b2m {alpha}'])[1]:.4f}, "
              f"b2m+neg > no_info+neg {mann_whitney_greater(auc[f'b2m+neg {alpha}'], auc[f'no_info+neg {alpha}'])[1]:.4f}, "
              f"no_info+neg > alpha0 {mann_whitney_greater(auc[f'no_info+neg {alpha}'], auc['alpha0'])[1]:.4f}")
    quality = {name: np.array([seed["quality"][name] for seed in seeds]) for name in seeds[0]["quality"]}
    print("\nteacher goal decodability (balanced accuracy, pre-stimulus window; chance 0.5): "
          + ", ".join(f"{name} {values.mean():.3f} +- {_sem(values):.3f}" for name, values in quality.items()))


def _auc(curve: np.ndarray) -> float:
    from b2m_neuro.stats import trajectory_auc

    return float(trajectory_auc(curve))


def _sem(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


if __name__ == "__main__":
    main()
