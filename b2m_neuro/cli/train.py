"""``b2m-neuro train DERIVATIVE --alpha 0.012 --out runs/x``: one brain-guided training run."""

from __future__ import annotations

import argparse


def register(cli) -> None:
    parser = cli.command("train", help="Train a student on a derivative with brain guidance (one run)")
    parser.add_argument("derivative", help="derivative folder (b2m-neuro embed --out ...)")
    parser.add_argument("--model", default="gru", help="registered student model (default gru)")
    parser.add_argument("--alpha", type=float, required=True,
                        help="weight of the transfer loss in [0, 1]; 0 = no brain guidance")
    parser.add_argument("--transfer", default="contrastive", choices=["contrastive", "contrastive-cosine", "latent"])
    parser.add_argument("--temperature", type=float, default=0.1, help="InfoNCE temperature (default 0.1)")
    parser.add_argument("--reduction", default="mean", choices=["mean", "sum"],
                        help="InfoNCE over anchors: mean (default) or sum (the paper's equation)")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    parser.add_argument("--batch-size", type=int, default=1, help="episodes per batch (default 1)")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--control", default=None, choices=["shuffled"],
                        help="shuffled: brain embeddings shuffled along trials (negative control)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    parser.add_argument("--task", default="memory", choices=["memory", "trials"])
    parser.add_argument("--hidden-size", type=int, default=None, help="GRU hidden units (default 512)")
    parser.add_argument("--dropout", type=float, default=None, help="GRU dropout (default 0.3)")
    parser.add_argument("--time-stride", type=int, default=None,
                        help="keep every n-th time point of each trial (default 1: all)")
    parser.add_argument("--n-test", type=int, default=None, help="simulated test sequences (memory; default 1000)")
    parser.add_argument("--stimulus", default=None, help="stimulus variable (task trials; default stimulus)")
    parser.add_argument("--target", default=None, help="binary target variable (task trials; default correct_response)")
    parser.add_argument("--episode", default=None, help="episode/block variable (task trials; default episode)")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="held-out fraction of episodes (task trials; default 0.2)")
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
    optional = {name: getattr(args, name) for name in ("hidden_size", "dropout", "time_stride", "n_test", "stimulus",
                                                       "target", "episode", "test_fraction")}
    result = train(
        args.derivative, args.model, alpha=args.alpha, transfer=args.transfer, temperature=args.temperature,
        reduction=args.reduction, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        weight_decay=args.weight_decay, control=args.control, seed=args.seed, device=args.device, task=args.task,
        progress=not args.quiet, **{name: value for name, value in optional.items() if value is not None},
    )
    result.save(out, overwrite=args.overwrite)
    print(f"{result.summary()} -> {out}")
