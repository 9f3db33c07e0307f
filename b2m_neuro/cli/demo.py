"""``b2m-neuro demo``: the whole B2M pipeline on the built-in simulated teacher.

simulate sessions -> NWB (DANDI layout) -> spike adapter -> CEBRA -> derivative -> sweep with
shuffled and L2 controls -> report. Each step is the documented command of that stage, run in this
process, so the demo shows exactly what a user would type.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from b2m_neuro.errors import B2MError

# A CPU-sized study (a few minutes on 2 cores) and the reference study (a GPU; hours on a CPU).
SIZES = {
    "quick": {"sessions": 3, "trials": 160, "iterations": 120, "alphas": ["0.05", "0.2"], "seeds": 3,
              "epochs": 40, "l2": ["1e-4", "1e-3"], "train": ["--hidden-size", "64", "--lr", "3e-3",
                                              "--time-stride", "100", "--n-test", "200"]},
    "full": {"sessions": 17, "trials": 400, "iterations": 15000,
             "alphas": ["0.004", "0.008", "0.012", "0.016", "0.02", "0.024", "0.028", "0.032", "0.036", "0.04"],
             "seeds": 10, "epochs": 150, "l2": ["1e-5", "1e-4", "1e-3"], "train": []},
}
# command-line overrides of a size's settings, for quick looks and tests
OVERRIDES = {"sessions": "number of simulated sessions", "trials": "trials per session",
             "iterations": "CEBRA training steps", "seeds": "seeds per condition", "epochs": "epochs per run"}


def register(cli) -> None:
    demo = cli.command("demo", help="Run the end-to-end B2M pipeline on the simulated teacher (minutes on a CPU)")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output/)")
    demo.add_argument("--full", action="store_true",
                      help="the reference-scale study (17 sessions, 15,000 CEBRA steps, 10 alphas x 10 seeds, "
                           "GRU 512, 150 epochs): for a GPU")
    for name, what in OVERRIDES.items():
        demo.add_argument(f"--{name}", type=int, default=None, help=f"override the {what}")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> None:
    size = dict(SIZES["full" if args.full else "quick"])
    size.update({name: value for name in OVERRIDES if (value := getattr(args, name)) is not None})
    out = args.out
    dandiset, derivative = out / "dandiset", out / "derivatives" / "b2m-cebra"
    runs, report = out / "runs", out / "report"
    quiet = ["--quiet"] if args.quiet else []
    train = [*size["train"], "--epochs", str(size["epochs"])]
    steps = [
        ("simulate", ["simulate", "memory", "--sessions", str(size["sessions"]), "--trials", str(size["trials"]),
                      "--out", str(dandiset), "--overwrite", *quiet]),
        ("embed", ["embed", str(dandiset), "--spec", "paper", "--method", "cebra",
                   "--iterations", str(size["iterations"]), "--out", str(derivative), "--overwrite", *quiet]),
        ("sweep", ["sweep", str(derivative), "--alphas", *size["alphas"], "--seeds", str(size["seeds"]),
                   "--controls", "shuffled", "l2", "--l2", *size["l2"], "--engine", "batched", "--out", str(runs), *train, *quiet]),
        ("report", ["report", str(runs), "--out", str(report), "--overwrite", *quiet]),
    ]
    for folder in (dandiset, derivative, runs, report):  # the demo replaces its own previous outputs
        if folder.exists():
            shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for number, (name, argv) in enumerate(steps, start=1):
        print(f"\n[{number}/{len(steps)}] b2m-neuro {' '.join(argv)}", flush=True)
        _run_step(name, argv)
    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Outputs in {out}/:\n"
          f"  {dandiset}/        simulated sessions as NWB (DANDI layout)\n"
          f"  {derivative}/  CEBRA brain embeddings (BIDS derivative) + {derivative.name}_quality.png\n"
          f"  {runs}/            one file per training run (resumable store)\n"
          f"  {report}/          figures (PNG, SVG) and statistics.md")


def _run_step(name: str, argv: list[str]) -> None:
    from b2m_neuro.cli import main

    if main(argv) != 0:
        raise B2MError(f"the demo stopped at its {name!r} step (see the message above)", field=name,
                       fix="fix the cause, then run the demo again; finished steps are simply redone")
