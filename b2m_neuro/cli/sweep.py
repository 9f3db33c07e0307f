"""``b2m-neuro sweep DERIVATIVE ...`` and ``b2m-neuro report RUNS --out REPORT``."""

from __future__ import annotations

import argparse

from b2m_neuro.cli._train_options import add_train_options, given_train_options
from b2m_neuro.controls import CONDITIONS


def register(cli) -> None:
    sweep = cli.command("sweep", help="Train an alpha x seed grid with controls into a resumable store")
    sweep.add_argument("derivative", help="derivative folder (b2m-neuro embed --out ...)")
    sweep.add_argument("--model", default="gru", help="registered student model (default gru; vae with --scenes)")
    sweep.add_argument("--alphas", type=float, nargs="+", required=True,
                       help="B2M strengths in (0, 1]; the alpha 0 baseline is always added")
    sweep.add_argument("--seeds", type=int, default=10, help="number of seeds, 0..N-1 (default 10)")
    sweep.add_argument("--controls", nargs="*", default=None, choices=CONDITIONS[1:],
                       help="controls to run (default: all; give none for B2M and baseline only)")
    sweep.add_argument("--no-info", default=None, metavar="DERIVATIVE",
                       help="the no-information teacher: a derivative of the same sessions without the task "
                            "information (default: the phase-randomized surrogate of DERIVATIVE)")
    sweep.add_argument("--l2", type=float, nargs="+", default=None, help="weight decays of the L2 control (default 1e-5 1e-4 1e-3)")
    sweep.add_argument("--out", default="runs", help="store folder; re-run the same command to resume (default runs/)")
    sweep.add_argument("--engine", default="sequential", choices=["sequential", "batched"])
    sweep.add_argument("--scheduler", default=None,
                       help="Dask: 'local' (a LocalCluster on this machine) or a scheduler address; default in-process")
    add_train_options(sweep, skip=("weight_decay", "seed"))  # set by the grid: --l2, --seeds
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

    options = given_train_options(args)
    if args.controls is not None:
        options["controls"] = tuple(args.controls)
    if args.no_info is not None:
        options["no_info"] = args.no_info
    result = sweep(args.derivative, args.model, alphas=args.alphas, seeds=args.seeds, l2=tuple(args.l2 or DEFAULT_L2),
                   out=args.out, engine=args.engine, scheduler=args.scheduler, progress=not args.quiet, **options)
    table = result.statistics(metric="test_psnr" if args.model == "vae" else "test_accuracy")
    winners = table[(table.measure == "auc") & (table.brain_effect == True)].strength  # noqa: E712 (NaN on other rows)
    print(f"sweep: {int(result['trained'].sum())} runs in {args.out}; "
          f"{int(table[table.measure == 'auc'].n_diverged.sum())} diverged (excluded from statistics); "
          f"B2M beats the no-information teacher and alpha 0 (AUC, p < 0.05) at alpha: "
          f"{', '.join(f'{a:g}' for a in winners) or 'none'}. Next: b2m-neuro report {args.out} --out report")


def _report(args: argparse.Namespace) -> None:
    from b2m_neuro.report import write_report

    out = write_report(args.runs, args.out, metric=args.metric, last=args.last, overwrite=args.overwrite,
                       progress=not args.quiet)
    print((out / "statistics.md").read_text())
    print(f"report: figures (PNG, SVG) and statistics.md / statistics.csv in {out}")
