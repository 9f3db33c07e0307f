"""The training options shared by ``b2m-neuro train`` and ``b2m-neuro sweep``.

The optimisation options are the fields of :class:`b2m_neuro.engine.TrainConfig`: their types and
the defaults shown in the help come from it. Every option defaults to ``None`` and is passed on
only when given, so :func:`b2m_neuro.train` (and the task and model) apply their own defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, get_args

from b2m_neuro.engine import TrainConfig
from b2m_neuro.transfer import TRANSFER_LOSSES, Reduction

# TrainConfig field -> (help, choices)
_CONFIG_HELP = {
    "transfer": ("transfer loss", TRANSFER_LOSSES),
    "temperature": ("InfoNCE temperature", None),
    "reduction": ("InfoNCE over the anchors: mean, or sum as in the paper's equation", get_args(Reduction)),
    "epochs": ("epochs per run", None),
    "lr": ("Adam learning rate", None),
    "batch_size": ("episodes per batch", None),
    "weight_decay": ("Adam weight decay (L2)", None),
    "seed": ("seed of the initial weights, dropout, episode order and control teacher", None),
    "negatives": ("InfoNCE negatives drawn from other episodes each step; 0: the episode's own rows only", None),
}
# device, task, task and model options -> add_argument keywords
_OTHER_OPTIONS = {
    "device": dict(help="auto (the default: CUDA, then MPS, then CPU), cpu, cuda, mps"),
    "task": dict(help="what the student learns: memory (default; the goal-switching task), study_test (recognition), "
                      "sternberg (working memory) or trials (any trial table)"),
    "hidden_size": dict(type=int, help="GRU hidden units (default 512)"),
    "dropout": dict(type=float, help="GRU dropout (default 0.3)"),
    "time_stride": dict(type=int, help="keep every n-th time point of each trial (default 1: all)"),
    "pair": dict(choices=("all", "unscored", "pre"),
                 help="trial time points paired with the brain embedding: pre (default; pre-stimulus), unscored (all but the response) or all"),
    "n_test": dict(type=int, help="simulated test sequences (tasks memory, sternberg: default 1000; study_test: 200); test scenes used (model vae; default all)"),
    "stimulus": dict(help="stimulus variable (tasks trials, study_test; default stimulus)"),
    "target": dict(help="binary target variable (task trials; default correct_response); the recorded label checked "
                        "against the rule (tasks study_test, sternberg; default none)"),
    "episode": dict(help="episode/block variable (task trials; default episode; task study_test: default none, each "
                         "session one episode)"),
    "phase": dict(help="phase variable (task study_test; default task_phase)"),
    "phases": dict(help="the phase variable's study and test values, comma-separated (task study_test; default "
                        "study,test)"),
    "encoding": dict(help="encoding-item variables, comma-separated (task sternberg; default "
                          "encoding_1,encoding_2,encoding_3)"),
    "probe": dict(help="probe variable (task sternberg; default probe)"),
    "test_fraction": dict(type=float, help="held-out fraction of episodes (task trials; default 0.2)"),
    "scenes": dict(help="image folder of the VAE's training scenes (model vae), e.g. the CARLA scenes (train/, test/)"),
    "stimuli": dict(help="the BIDS stimuli/ folder of the frames (model vae; default: found from the derivative)"),
    "pair_batch": dict(type=int, help="frame/EEG pairs per step for the latent transfer (model vae; default 256)"),
    "n_train": dict(type=int, help="use only the first N training scenes (model vae; default all)"),
    "channels": dict(type=int, nargs=4, help="VAE encoder channels (model vae; default 32 64 128 256)"),
    "hidden": dict(type=int, help="VAE hidden layer width (model vae; default 1024)"),
}


def add_train_options(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """Add the training options, except ``skip`` (names set otherwise, such as a sweep's grid)."""
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    names = []
    for name, (text, choices) in _CONFIG_HELP.items():
        if name not in skip:
            default = defaults[name]
            parser.add_argument(_flag(name), type=type(default), choices=choices, default=None,
                                help=f"{text} (default {default:g})" if isinstance(default, float) else
                                f"{text} (default {default})")
            names.append(name)
    for name, keywords in _OTHER_OPTIONS.items():
        if name not in skip:
            parser.add_argument(_flag(name), default=None, **keywords)
            names.append(name)
    parser.set_defaults(train_options=tuple(names))


def given_train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training options given on the command line, as keywords of :func:`b2m_neuro.train`."""
    return {name: getattr(args, name) for name in args.train_options if getattr(args, name) is not None}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
