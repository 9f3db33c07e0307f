"""``b2m-neuro demo``: the whole B2M pipeline on the built-in simulated teacher.

simulate a session (and its no-information twin) -> NWB (DANDI layout) -> spike adapter -> embedding
-> derivatives -> sweep with no-information, shuffled and L2 controls -> report. Each step is the
documented command of that stage, run in this process, so the demo shows exactly what a user would
type.

The CPU-sized study (``quick``) is chosen to show the effect the method claims within minutes: a
coarse teacher (the 1 s before each stimulus and the stimulus period, one bin each: ``--spec
coarse``) embedded by PCA, which carries the hidden goal; brain pairing at the pre-stimulus points
(the default ``pair="pre"``); and, as the primary contrast, the same simulated participant with the
task information switched off (``--no-goal-information``), embedded the same way. ``--full`` is
the reference-scale study of the paper (17 sessions, CEBRA, GRU 512, every trial point paired),
for a GPU.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from b2m_neuro.errors import B2MError

# A CPU-sized study (a few minutes on 2 cores) and the reference study (a GPU; hours on a CPU).
SIZES = {
    "quick": {"sessions": 1, "trials": 480, "spec": "coarse", "method": ["pca"], "alphas": ["0.1"], "seeds": 8,
              "epochs": 30, "l2": ["1e-4"], "scheduler": ["--scheduler", "local"],
              "train": ["--hidden-size", "64", "--lr", "3e-3", "--transfer", "contrastive-cosine", "--n-test", "200"]},
    "full": {"sessions": 17, "trials": 400, "spec": "paper", "method": ["cebra", "--iterations", "15000"],
             "alphas": ["0.004", "0.008", "0.012", "0.016", "0.02", "0.024", "0.028", "0.032", "0.036", "0.04"],
             "seeds": 10, "epochs": 150, "l2": ["1e-5", "1e-4", "1e-3"], "scheduler": [], "train": ["--pair", "all"]},
}
# command-line overrides of a size's settings, for quick looks and tests
OVERRIDES = {"sessions": "number of simulated sessions", "trials": "trials per session",
             "seeds": "seeds per condition", "epochs": "epochs per run"}


def register(cli) -> None:
    demo = cli.command("demo", help="Run the end-to-end B2M pipeline on the simulated teacher (minutes on a CPU)")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output/)")
    demo.add_argument("--full", action="store_true",
                      help="the reference-scale study (17 sessions, 15,000 CEBRA steps, 10 alphas x 10 seeds, "
                           "GRU 512, 150 epochs): for a GPU")
    for name, what in OVERRIDES.items():
        demo.add_argument(f"--{name}", type=int, default=None, help=f"override the {what}")
    demo.add_argument("--in-process", action="store_true",
                      help="train in this process (default for the quick demo: a local Dask cluster, one worker per core)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> None:
    size = dict(SIZES["full" if args.full else "quick"])
    size.update({name: value for name in OVERRIDES if (value := getattr(args, name)) is not None})
    out = args.out
    method = size["method"][0]
    dandiset, blind_dandiset = out / "dandiset", out / "dandiset-no-info"
    derivative, blind = out / "derivatives" / f"b2m-{method}", out / "derivatives" / f"b2m-{method}-no-info"
    runs, report = out / "runs", out / "report"
    quiet = ["--quiet"] if args.quiet else []
    scheduler = [] if args.in_process else size["scheduler"]
    train = [*size["train"], "--epochs", str(size["epochs"])]
    simulate = ["simulate", "memory", "--sessions", str(size["sessions"]), "--trials", str(size["trials"]),
                "--overwrite", *quiet]
    embed = ["--spec", size["spec"], "--method", *size["method"], "--overwrite", *quiet]
    steps = [
        ("simulate", [*simulate, "--out", str(dandiset)]),
        ("simulate", [*simulate, "--no-goal-information", "--out", str(blind_dandiset)]),
        ("embed", ["embed", str(dandiset), *embed, "--out", str(derivative)]),
        ("embed", ["embed", str(blind_dandiset), *embed, "--desc", f"{method}noinfo", "--out", str(blind)]),
        ("sweep", ["sweep", str(derivative), "--alphas", *size["alphas"], "--seeds", str(size["seeds"]),
                   "--controls", "no_info", "shuffled", "l2", "--no-info", str(blind), "--l2", *size["l2"],
                   "--engine", "batched", *scheduler, "--out", str(runs), *train, *quiet]),
        ("report", ["report", str(runs), "--out", str(report), "--overwrite", *quiet]),
    ]
    for folder in (dandiset, blind_dandiset, derivative, blind, runs, report):  # the demo replaces its own outputs
        if folder.exists():
            shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for number, (name, argv) in enumerate(steps, start=1):
        print(f"\n[{number}/{len(steps)}] b2m-neuro {' '.join(argv)}", flush=True)
        _run_step(name, argv)
    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Outputs in {out}/:\n"
          f"  {dandiset}/          simulated sessions as NWB (DANDI layout)\n"
          f"  {blind_dandiset}/  the same participant without task information (the no-information teacher)\n"
          f"  {derivative}/    brain embeddings (BIDS derivative) + {derivative.name}_quality.png\n"
          f"  {runs}/              one file per training run (resumable store)\n"
          f"  {report}/            figures (PNG, SVG) and statistics.md")


def _run_step(name: str, argv: list[str]) -> None:
    from b2m_neuro.cli import main

    if main(argv) != 0:
        raise B2MError(f"the demo stopped at its {name!r} step (see the message above)", field=name,
                       fix="fix the cause, then run the demo again; finished steps are simply redone")
