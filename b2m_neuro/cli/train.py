"""``b2m-neuro train DERIVATIVE --alpha 0.012 --out runs/x``: one brain-guided training run."""

from __future__ import annotations

import argparse

from b2m_neuro.cli._train_options import add_train_options, given_train_options
from b2m_neuro.controls import CONTROLS


def register(cli) -> None:
    parser = cli.command("train", help="Train a student on a derivative with brain guidance (one run)")
    parser.add_argument("derivative", help="derivative folder (b2m-neuro embed --out ...)")
    parser.add_argument("--model", default="gru", help="registered student model (default gru; vae with --scenes)")
    parser.add_argument("--alpha", type=float, required=True,
                        help="weight of the transfer loss in [0, 1]; 0 = no brain guidance")
    parser.add_argument("--control", default=None, choices=CONTROLS,
                        help="a control teacher (b2m_neuro.controls): shuffled (brain embeddings shuffled along "
                             "trials) or surrogate (phase-randomized, no task information); default none")
    add_train_options(parser)
    parser.add_argument("--out", required=True, help="folder to write the run to (weights, config, history)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> None:
    from pathlib import Path

    from b2m_neuro._util.files import check_writable_target
    from b2m_neuro.errors import TrainingError
    from b2m_neuro.training import train

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable_target(out, overwrite=args.overwrite, error=TrainingError)
    result = train(args.derivative, args.model, alpha=args.alpha, control=args.control, progress=not args.quiet,
                   **given_train_options(args))
    result.save(out, overwrite=args.overwrite)
    print(f"{result.summary()} -> {out}")
