"""``b2m-neuro sweep DERIVATIVE ...`` and ``b2m-neuro report RUNS --out REPORT``."""

from __future__ import annotations

import argparse

# command-line option -> train() keyword, passed only when given (train's defaults apply otherwise)
_TRAIN_OPTIONS = ("transfer", "temperature", "reduction", "epochs", "lr", "batch_size", "device", "task",
                  "hidden_size", "dropout", "time_stride", "n_test")


def register(cli) -> None:
    sweep = cli.command("sweep", help="Train an alpha x seed grid with controls into a resumable store")
    sweep.add_argument("derivative", help="derivative folder (b2m-neuro embed --out ...)")
    sweep.add_argument("--model", default="gru", help="registered student model (default gru)")
    sweep.add_argument("--alphas", type=float, nargs="+", required=True,
                       help="B2M strengths in (0, 1]; the alpha 0 baseline is always added")
    sweep.add_argument("--seeds", type=int, default=10, help="number of seeds, 0..N-1 (default 10)")
    sweep.add_argument("--controls", nargs="*", default=["shuffled", "l2"], choices=["shuffled", "surrogate", "l2"],
                       help="controls to run (default: shuffled l2; give none for B2M and baseline only)")
    sweep.add_argument("--l2", type=float, nargs="+", default=None, help="weight decays of the L2 control (default 1e-5 1e-4 1e-3)")
    sweep.add_argument("--out", default="runs", help="store folder; re-run the same command to resume (default runs/)")
    sweep.add_argument("--engine", default="sequential", choices=["sequential", "batched"])
    sweep.add_argument("--scheduler", default=None,
                       help="Dask: 'local' (a LocalCluster on this machine) or a scheduler address; default in-process")
    sweep.add_argument("--transfer", default=None, choices=["contrastive", "contrastive-cosine", "latent"])
    sweep.add_argument("--temperature", type=float, default=None, help="InfoNCE temperature (default 0.1)")
    sweep.add_argument("--reduction", default=None, choices=["mean", "sum"])
    sweep.add_argument("--epochs", type=int, default=None, help="epochs per run (default 150)")
    sweep.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4)")
    sweep.add_argument("--batch-size", type=int, default=None, help="episodes per batch (default 1)")
    sweep.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")
    sweep.add_argument("--task", default=None, choices=["memory", "trials"])
    sweep.add_argument("--hidden-size", type=int, default=None, help="GRU hidden units (default 512)")
    sweep.add_argument("--dropout", type=float, default=None, help="GRU dropout (default 0.3)")
    sweep.add_argument("--time-stride", type=int, default=None, help="keep every n-th time point (default 1)")
    sweep.add_argument("--n-test", type=int, default=None, help="simulated test sequences (memory; default 1000)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.set_defaults(run=_sweep)

    report = cli.command("report", help="Figures (PNG, SVG) and a statistics table of a sweep store")
    report.add_argument("runs", help="sweep store folder (b2m-neuro sweep --out ...)")
    report.add_argument("--out", required=True, help="report folder to write")
    report.add_argument("--metric", default="test_accuracy", help="test metric to show (default test_accuracy)")
    report.add_argument("--last", type=int, default=10, help="epochs averaged for the final metric (default 10)")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(run=_report)


def _sweep(args: argparse.Namespace) -> None:
    from b2m_neuro.sweeps import DEFAULT_L2, sweep

    options = {name: getattr(args, name) for name in _TRAIN_OPTIONS if getattr(args, name) is not None}
    result = sweep(args.derivative, args.model, alphas=args.alphas, seeds=args.seeds, controls=tuple(args.controls),
                   l2=tuple(args.l2 or DEFAULT_L2), out=args.out, engine=args.engine, scheduler=args.scheduler,
                   progress=not args.quiet, **options)
    table = result.statistics()
    winners = table[(table.measure == "auc") & (table.beats_both == True)].strength  # noqa: E712 (NaN on other rows)
    print(f"sweep: {int(result['trained'].sum())} runs in {args.out}; "
          f"{int(table[table.measure == 'auc'].n_diverged.sum())} diverged (excluded from statistics); "
          f"B2M beats the best L2 and the shuffled control (AUC, p < 0.05) at alpha: "
          f"{', '.join(f'{a:g}' for a in winners) or 'none'}. Next: b2m-neuro report {args.out} --out report")


def _report(args: argparse.Namespace) -> None:
    from b2m_neuro.report import write_report

    out = write_report(args.runs, args.out, metric=args.metric, last=args.last, overwrite=args.overwrite,
                       progress=not args.quiet)
    print((out / "statistics.md").read_text())
    print(f"report: figures (PNG, SVG) and statistics.md / statistics.csv in {out}")
