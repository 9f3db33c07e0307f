"""The training contract and the one loop, for R >= 1 independent runs at once: ``fit_runs([Run(...), ...])``.

A run is task data (:class:`b2m_neuro.tasks.TaskData`), a student and its optimisation settings
(:class:`TrainConfig`, whose field defaults are the reference settings); its result is a history
over epochs (:data:`HISTORY_VARIABLES`). Every run keeps its own seed, episode order, dropout masks,
Adam state, alpha, transfer loss, learning rate and weight decay, and its history does not depend on
which other runs share its group (up to float rounding). :func:`b2m_neuro.train` is this loop with
R = 1. This module imports no stage above it (training, sweeps, the command line).

How runs are batched
--------------------
Runs whose networks say they can be stacked (the model protocol below), with the same number of
training sequences and batch size, are *grouped*: one forward pass computes all of them with
stacked weights. The reference GRU does this with a hand-written GRU and its backward pass
(:mod:`b2m_neuro.models.stacked_gru`).

Group size (:func:`auto_group_size`): with one sequence per batch, every time step reads each run's
recurrent weights once (forward and backward), so the work is bound by memory bandwidth and grouping
pays only while the group's weights stay in cache between steps (and by sharing each step's
Python and dispatch overhead among the runs). On a CPU a group holds as many runs as fit their
recurrent weights (``4 * 3H * (H + I)`` bytes each) into 1/8 of the last-level cache, at least one:
with a 32 MiB L3, 1 run of hidden 512 (3 MiB each) or 21 runs of hidden 128. The fraction was
measured on a busy 2-core EPYC (L3 shared with other processes), where groups of 4 runs of hidden
512 were 20-40 % slower per run than single runs and hidden 128 peaked at 8-16 runs per group; pass
``group_size=`` to override. The CPU's compiled time loops (:mod:`b2m_neuro.models.gru_kernel`) take
one run at a time through all its steps, so there a group shares only the work around the loops
(losses, Adam, evaluation calls). Measured with them (16 runs, run-epochs per second, median of two
epochs): groups of 1, 4, 8 and 16 runs of hidden 128 gave 2.73, 4.19, 4.90 and 5.06 (the rule picks
16); groups of 1, 4 and 16 runs of hidden 512 gave 0.55, 0.59 and 0.49, the same within this
machine's noise (the rule picks 1). Larger sweeps are trained as several groups, one after the
other. On a GPU a group holds every compatible run, limited only by the memory the saved
activations need.
Where ``nn.GRU`` is faster (a lone run on CUDA, where cuDNN fuses the whole sequence), a group of
one run uses it instead (``backend="auto"``).

The model protocol
------------------
The loop talks to a *group object* holding R runs' weights, never to a network's layers. A student
(:class:`b2m_neuro.models.aligned.AlignedModel`) aligned at its network's own ``align_layer`` is
grouped when the network's class offers:

``network.stacking_key() -> hashable or None``
    Networks of one class with equal keys can share a group; ``None``: train this one alone.
``network.recurrent_size() -> (hidden_size, n_inputs)``
    The widths that set how many runs a group holds (:func:`auto_group_size`).
``NetworkClass.stack(networks, *, generators, device, backend) -> group`` (a classmethod)
    The group object of R such networks; ``generators[r]`` is run r's dropout generator (seeded
    from its seed), ``backend`` one of :data:`BACKENDS`.

Any other student (a user ``torch.nn.Module``) is trained alone (R = 1) through its own forward
pass, wrapped in the same interface; its dropout, if any, draws from torch's global random
generator (seeded by :func:`b2m_neuro.train`). A group object offers:

``parameters``
    List of tensors ``(R, ...)``, the runs' weights, updated in place by :class:`StackedAdam`.
``gradients()``
    Their gradients after a backward pass, in the same order (``None`` for a tensor without one).
``zero_grad()``
    Clear the gradients.
``forward(inputs, lengths)``
    Training pass (dropout on), differentiable: ``inputs (R, B, T, I)``, run r computed for its
    first ``lengths[r]`` steps -> outputs ``(R, B, T)`` and aligned layer ``(R, B, T, L)``.
``predict(inputs, runs, steps, lengths)``
    Evaluation pass (dropout off, no gradient) of the runs ``runs`` on shared ``inputs (1, B, T, I)``
    at the time indices ``steps`` -> outputs ``(R', B, S)`` and aligned layer ``(R', B, S, L)``;
    ``lengths`` (each sequence's length) lets a group skip the steps past a sequence's end (the
    loop uses no output there).
``finite()``
    Boolean ``(R,)`` array: which runs' weights are all finite.
``write_back()``
    Copy the trained weights into the students (nothing to do where they were trained in place).

:class:`b2m_neuro.models.gru.ReferenceGRU` implements it with
:class:`b2m_neuro.models.stacked_gru.StackedReferenceGRUs`.

Semantics of one run
--------------------
Adam (as ``torch.optim.Adam``, weight decay added to the gradient) over batches of training
sequences in an order drawn each epoch from ``numpy.random.default_rng(config.seed)``; task loss:
mean squared error at the scored response points; transfer loss
(:func:`b2m_neuro.transfer.transfer_loss`) between the brain embedding and the aligned layer at the
paired time points; total ``(1 - alpha) * task + alpha * transfer``. Dropout masks come from the
run's own ``torch.Generator`` (seeded from ``config.seed``). A run is stopped and marked diverged when
a batch's total loss is NaN/inf (that epoch stays NaN), when its weights stop being finite, or when an
epoch's mean total loss exceeds ``divergence_factor`` times the first batch's loss; the other runs of
its group go on unchanged. After each epoch the run is evaluated on its test set with dropout off,
and the alignment of its aligned layer with the brain embedding (linear CKA and RSA, see
:func:`_alignment`) is measured on the paired time points of its training sequences, also with
dropout off: the test sequences have no brain embedding.

torch is imported inside the functions, so the contract (:class:`TrainConfig`,
:data:`HISTORY_VARIABLES`) loads without it (the command line reads the defaults from it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from b2m_neuro._util.arrays import content_key
from b2m_neuro._util.progress import track
from b2m_neuro.errors import TrainingError
from b2m_neuro.transfer import CONTRASTIVE_LOSSES, TRANSFER_LOSSES, Reduction, check_alpha

if TYPE_CHECKING:
    import torch
    import xarray as xr

    from b2m_neuro.tasks import TaskData

__all__ = ["TrainConfig", "HISTORY_VARIABLES", "Run", "fit_runs", "plan_groups", "auto_group_size", "StackedAdam",
           "seeded_generator", "history_dataset", "RunStatus", "BACKENDS"]

#: ``backend=`` values: "auto", "stacked" (stacked weights, one pass for the group), "nn.GRU" (one nn.GRU call per run).
BACKENDS = ("auto", "stacked", "nn.GRU")
EVAL_CHUNK = 256  # test sequences per evaluation pass
_FALLBACK_CACHE_BYTES = 32 * 2**20
_TRAIN_FIELDS = ("inputs", "targets", "scored", "brain", "paired")
_TEST_FIELDS = ("inputs", "targets", "scored")

#: The per-epoch variables of a run's history, with their descriptions.
HISTORY_VARIABLES = {
    "task_loss": "mean task loss (MSE at response points) over the epoch's training batches",
    "transfer_loss": "mean transfer loss over the epoch's training batches (computed even when alpha = 0)",
    "total_loss": "mean (1 - alpha) * task_loss + alpha * transfer_loss over the epoch's batches",
    "train_accuracy": "fraction of training responses whose sign matches the target (dropout on)",
    "test_loss": "task loss on the test set after the epoch",
    "test_accuracy": "fraction of test responses whose sign matches the target after the epoch",
    "alignment_cka": "linear CKA between the aligned layer (dropout off) and the brain embedding over the "
                     "paired time points of the training sequences, after the epoch",
    "alignment_rsa": "Spearman correlation of the Euclidean-distance RDMs of the aligned layer (dropout off) and "
                     "the brain embedding over at most 300 paired training time points (fixed subsample), after the epoch",
    "wall_time": "seconds since training started, at the end of the epoch",
}


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation settings of one run; the field defaults are the reference settings.

    These defaults are written here only: :func:`b2m_neuro.train`, :func:`b2m_neuro.sweep` and the
    command line use them for every setting they are not given. Checked on construction.

    Attributes
    ----------
    alpha
        Weight of the transfer loss in ``(1 - alpha) * L_task + alpha * L_transfer``, in [0, 1].
    transfer
        Transfer loss, one of :data:`b2m_neuro.transfer.TRANSFER_LOSSES`: ``"contrastive"``
        (InfoNCE), ``"contrastive-cosine"`` (InfoNCE on cosine similarity), ``"latent"`` (MSE).
    temperature
        InfoNCE temperature ``tau``.
    reduction
        ``"mean"`` (alpha's scale then does not depend on sequence length) or ``"sum"`` (the
        paper's equation) over the InfoNCE anchors.
    epochs, lr, batch_size, weight_decay
        Adam: epochs, learning rate, training sequences (episodes) per batch, L2 weight decay.
    seed
        Fixes the initial weights, dropout, episode order, the control teachers and the negatives.
    negatives
        InfoNCE negatives from other episodes: with ``negatives=N > 0``, each step draws N paired
        brain rows of the run's *other* training sequences (uniformly, from the run's own seeded
        stream) and each of the student's aligned-layer rows must pick its own brain row among
        the episode's brain rows and these N (:func:`b2m_neuro.transfer.contrastive_loss` with
        ``negatives=``). 0 (the reference): the episode's own rows only, which with one episode
        per batch are few and mostly share the episode's goal states. Contrastive transfers only.
    divergence_factor
        A run stops, marked diverged, when an epoch's mean total loss exceeds this many times the
        loss of its first batch.

    Raises
    ------
    TrainingError
        For a setting out of range, naming it.
    """

    alpha: float
    transfer: str = "contrastive"
    temperature: float = 0.1
    reduction: str = "mean"
    epochs: int = 150
    lr: float = 1e-4
    batch_size: int = 1
    weight_decay: float = 0.0
    seed: int = 0
    negatives: int = 0
    divergence_factor: float = 100.0

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if self.transfer not in TRANSFER_LOSSES:
            raise TrainingError(f"unknown transfer loss {self.transfer!r}", field="transfer",
                                fix=f"choose one of: {', '.join(TRANSFER_LOSSES)}")
        if self.reduction not in get_args(Reduction):
            raise TrainingError(f"unknown reduction {self.reduction!r}", field="reduction", fix="choose 'mean' or 'sum'")
        for field in ("epochs", "batch_size"):
            value = getattr(self, field)
            if int(value) != value or value < 1:
                raise TrainingError(f"{field} must be a positive integer, got {value}", field=field,
                                    fix=f"pass {field}=1 or more")
        if int(self.negatives) != self.negatives or self.negatives < 0:
            raise TrainingError(f"negatives must be a whole number >= 0, got {self.negatives}", field="negatives",
                                fix="pass 0 (the episode's own rows only) or a count such as 256")
        if self.negatives and self.transfer not in CONTRASTIVE_LOSSES:
            raise TrainingError(f"negatives apply to the contrastive transfer losses, not {self.transfer!r}",
                                field="negatives", fix="pass negatives=0, or a contrastive transfer")
        if not self.lr > 0 or not self.temperature > 0 or self.weight_decay < 0:
            defaults = f"lr={TrainConfig.lr:g}, temperature={TrainConfig.temperature:g}, weight_decay={TrainConfig.weight_decay:g}"
            raise TrainingError("lr and temperature must be positive and weight_decay >= 0",
                                field="lr, temperature, weight_decay", fix=f"use e.g. the defaults: {defaults}")


@dataclass
class Run:
    """One training run.

    Attributes
    ----------
    data
        The task's padded arrays (:meth:`b2m_neuro.tasks.TrialSequenceTask.prepare`).
    student
        A :class:`b2m_neuro.models.aligned.AlignedModel` holding the initial weights, already on the
        training device; it is trained in place (it holds the final weights afterwards).
    config
        The run's optimisation settings.
    """

    data: TaskData
    student: Any
    config: TrainConfig


def fit_runs(runs: Sequence[Run], *, device: Any = "cpu", group_size: int | None = None, backend: str = "auto",
             progress: bool = True) -> list[tuple[xr.Dataset, bool]]:
    """Train several independent runs, batching those whose shapes agree.

    Parameters
    ----------
    runs
        The runs; each student is trained in place.
    device
        The torch device the students are on (``"cpu"``, ``"cuda"``, a ``torch.device``).
    group_size
        Most runs trained together in one group; ``None`` picks it from the hardware
        (:func:`auto_group_size`).
    backend
        One of :data:`BACKENDS`: ``"auto"``, ``"stacked"`` (the reference GRU's hand-written
        batched GRU) or ``"nn.GRU"`` (one ``nn.GRU`` call per run); see the module docstring.
    progress
        Show a progress bar over each group's epochs.

    Returns
    -------
    list of (history, diverged)
        Per run, in the order of ``runs``: the per-epoch history (``xarray.Dataset`` over ``epoch``,
        NaN after a divergence) and whether the run diverged.

    Examples
    --------
    >>> runs = [Run(data, student, TrainConfig(alpha=a, seed=s)) for ...]  # doctest: +SKIP
    >>> [(history, diverged), ...] = fit_runs(runs, device="cpu")           # doctest: +SKIP
    """
    import torch

    if backend not in BACKENDS:
        raise TrainingError(f"unknown engine backend {backend!r}", field="backend", fix=f"choose one of: {', '.join(BACKENDS)}")
    if group_size is not None and (int(group_size) != group_size or group_size < 1):
        raise TrainingError(f"group_size must be a positive integer, got {group_size}", field="group_size",
                            fix="pass None (automatic) or 1 or more")
    device = torch.device(device)
    outcomes: list[tuple[xr.Dataset, bool] | None] = [None] * len(runs)
    for members in plan_groups(runs, device=device, group_size=group_size):
        group = [runs[i] for i in members]
        for index, outcome in zip(members, _train_group(group, device, backend, progress)):
            outcomes[index] = outcome
    return outcomes


def plan_groups(runs: Sequence[Run], *, device: Any = "cpu", group_size: int | None = None) -> list[list[int]]:
    """Indices of ``runs`` trained together: compatible stackable students in groups, others alone.

    Runs are compatible when their networks are of one class with equal stacking keys (for the
    reference GRU: hidden size, input width and latent width) and their number of training sequences
    and batch size agree; each set of compatible runs is cut into groups of at most ``group_size``
    runs (:func:`auto_group_size` when ``None``), keeping the order of ``runs``.
    """
    import torch

    device = torch.device(device)
    buckets: dict[Any, list[int]] = {}
    for index, run in enumerate(runs):
        key = _stacking_key(run)
        buckets.setdefault(key if key is not None else ("alone", index), []).append(index)
    groups = []
    for key, members in buckets.items():
        if key[0] == "alone":
            groups.append(members)
            continue
        hidden, n_inputs = runs[members[0]].student.model.recurrent_size()
        max_steps = max(int(runs[i].data.train_lengths.max()) for i in members)
        size = group_size or auto_group_size(hidden, n_inputs, device=device, n_runs=len(members),
                                             max_steps=max_steps, batch_size=runs[members[0]].config.batch_size)
        groups += [members[start:start + size] for start in range(0, len(members), size)]
    return groups


def auto_group_size(hidden_size: int, n_inputs: int, *, device: Any = "cpu", n_runs: int = 1,
                    max_steps: int = 1, batch_size: int = 1) -> int:
    """How many GRU runs to train together (see the module docstring for the rule).

    CPU: as many runs as fit their recurrent weights (``4 * 3H * (H + I)`` bytes each) into 1/8 of
    the last-level cache (read from ``/sys``; 32 MiB if unknown), at least 1. CUDA: all ``n_runs``,
    unless the saved activations (about ``4 * 20 * H * max_steps * batch_size`` bytes per run) would
    exceed half of the free GPU memory. Other devices: all ``n_runs``.
    """
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        per_run = 4 * 3 * hidden_size * (hidden_size + n_inputs)
        return max(1, min(n_runs, (_cache_bytes() // 8) // per_run))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_run = 4 * 20 * hidden_size * max_steps * batch_size
        return max(1, min(n_runs, (free // 2) // per_run))
    return max(1, n_runs)


# --- Adam over stacked runs --------------------------------------------------------------------


class StackedAdam:
    """Adam over tensors whose first dimension is the run, with per-run learning rate and weight decay.

    The arithmetic of ``torch.optim.Adam`` (not AMSGrad; weight decay added to the gradient, L2
    style, as torch does). Runs marked inactive in :meth:`step` are left untouched (their weights do
    not move, whatever their gradients hold).

    Parameters
    ----------
    params
        Tensors ``(R, ...)`` updated in place.
    lr, weight_decay
        One value per run.
    betas, eps
        As ``torch.optim.Adam``.
    """

    def __init__(self, params: Sequence[torch.Tensor], *, lr: Sequence[float], weight_decay: Sequence[float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        import torch

        self.params = list(params)
        self.lr = np.asarray(lr, dtype=np.float64)
        reference = self.params[0]
        self.weight_decay = torch.as_tensor(np.asarray(weight_decay, np.float64), dtype=reference.dtype,
                                            device=reference.device)
        self.decays = bool(np.any(np.asarray(weight_decay) != 0))  # else adding 0 * param is skipped
        self.betas, self.eps = betas, eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def step(self, grads: Sequence[torch.Tensor | None], active: torch.Tensor | None = None) -> None:
        """One Adam step with ``grads`` (``None`` for a tensor without gradient: skipped).

        ``active`` is a boolean ``(R,)`` tensor; inactive runs are not updated.
        """
        import torch

        beta1, beta2 = self.betas
        self.steps += 1
        correction1 = 1 - beta1 ** self.steps
        correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        reference = self.params[0]
        step_size = torch.as_tensor(self.lr / correction1, device=reference.device).to(reference.dtype)
        if active is not None and bool(active.all()):
            active = None  # every run moves: nothing to mask
        if active is not None:
            step_size = step_size * active.to(reference.dtype)
        with torch.no_grad():
            for param, grad, exp_avg, exp_avg_sq in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
                if grad is None:
                    continue
                shape = (-1,) + (1,) * (param.ndim - 1)
                if self.decays:
                    grad = grad + self.weight_decay.view(shape) * param
                if active is not None:
                    grad = torch.where(active.view(shape), grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                update = exp_avg_sq.sqrt().div_(correction2_sqrt).add_(self.eps)  # the denominator, then the update
                param.sub_(torch.div(exp_avg, update, out=update).mul_(step_size.view(shape)))


# --- groups (the model protocol) ---------------------------------------------------------------


def _stacking_key(run: Run) -> tuple | None:
    """Runs with equal keys can share a group; ``None``: the run is trained alone (model protocol)."""
    network = getattr(run.student, "model", None)
    if not hasattr(network, "stacking_key") or run.student.align_layer != network.align_layer:
        return None
    key = network.stacking_key()
    if key is None:
        return None
    return (type(network), key, len(run.data.train_lengths), int(run.config.batch_size))


def _group(runs: Sequence[Run], device: Any, backend: str) -> Any:
    """The group object of compatible ``runs`` (model protocol), or the lone student's wrapper."""
    if _stacking_key(runs[0]) is None:
        return _SingleModule(runs[0].student)
    networks = [run.student.model for run in runs]
    generators = [seeded_generator(run.config.seed, device) for run in runs]
    return type(networks[0]).stack(networks, generators=generators, device=device, backend=backend)


class _SingleModule:
    """Any other student, trained alone through its own forward pass (R = 1)."""

    def __init__(self, student: Any) -> None:
        self.student = student
        self.parameters = [p.detach().unsqueeze(0) for p in student.parameters()]  # views: updates land in place

    def gradients(self) -> list[torch.Tensor | None]:
        return [None if p.grad is None else p.grad.unsqueeze(0) for p in self.student.parameters()]

    def zero_grad(self) -> None:
        self.student.zero_grad(set_to_none=True)

    def forward(self, inputs: torch.Tensor, lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        self.student.train()
        outputs, embedding = self.student(inputs[0])
        return outputs.unsqueeze(0), embedding.unsqueeze(0)

    def predict(self, inputs: torch.Tensor, runs: Sequence[int], steps: Sequence[int],
                lengths: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        self.student.eval()
        with torch.no_grad():
            outputs, embedding = self.student(inputs[0])
        return outputs[:, list(steps)].unsqueeze(0), embedding[:, list(steps)].unsqueeze(0)

    def finite(self) -> np.ndarray:
        import torch

        return np.array([all(bool(torch.isfinite(p).all()) for p in self.student.parameters())])

    def write_back(self) -> None:
        """Nothing to do: the student's own parameters were trained."""


# --- the loop ----------------------------------------------------------------------------------


def _train_group(runs: Sequence[Run], device: Any, backend: str, progress: bool) -> list[tuple[xr.Dataset, bool]]:
    """Train one group (compatible runs, or one lone student) with the shared loop."""
    configs = [run.config for run in runs]
    model = _group(runs, device, backend)
    pool = _TensorPool(device)
    train = [pool.tensors(run.data, "train") for run in runs]
    test = [pool.tensors(run.data, "test") for run in runs]
    optimizer = StackedAdam(model.parameters, lr=[c.lr for c in configs], weight_decay=[c.weight_decay for c in configs])
    order_rngs = [np.random.default_rng(c.seed) for c in configs]
    banks = [_NegativeBank(tensors, run.data.train_lengths, run.config) if run.config.negatives else None
             for tensors, run in zip(train, runs)]
    epochs = np.array([c.epochs for c in configs])
    history = [{name: np.full(c.epochs, np.nan) for name in HISTORY_VARIABLES} for c in configs]
    status = RunStatus(len(runs))
    start = time.perf_counter()
    description = f"training {len(runs)} runs" if len(runs) > 1 else "training"
    for epoch in track(range(int(epochs.max())), description=description, total=int(epochs.max()), progress=progress):
        status.active &= epoch < epochs
        if not status.active.any():
            break
        sums = _train_epoch(model, optimizer, runs, train, order_rngs, banks, status, device)
        status.stop(status.active & ~model.finite())
        done = np.flatnonzero(status.active)
        if done.size:
            test_loss, test_accuracy = _evaluate(model, test, done, [run.data.test_lengths for run in runs])
            alignment = _alignment(model, train, done, [run.data.train_lengths for run in runs])
            for r in done:
                record = history[r]
                record["task_loss"][epoch], record["transfer_loss"][epoch], record["total_loss"][epoch] = sums[r, :3]
                record["train_accuracy"][epoch] = sums[r, 3] / sums[r, 4]
                record["test_loss"][epoch], record["test_accuracy"][epoch] = test_loss[r], test_accuracy[r]
                record["alignment_cka"][epoch], record["alignment_rsa"][epoch] = alignment[r]
                record["wall_time"][epoch] = time.perf_counter() - start
                if sums[r, 2] > configs[r].divergence_factor * max(status.start_loss[r], 1e-12):
                    status.stop(np.arange(len(runs)) == r)
    model.write_back()
    return [(history_dataset(history[r], bool(status.diverged[r])), bool(status.diverged[r])) for r in range(len(runs))]


class RunStatus:
    """Per run of a group: still training, diverged, and the first batch's loss (the divergence yardstick)."""

    def __init__(self, n_runs: int) -> None:
        self.active = np.ones(n_runs, bool)
        self.diverged = np.zeros(n_runs, bool)
        self.start_loss = np.full(n_runs, np.nan)

    def stop(self, blown: np.ndarray) -> None:
        """Mark the runs in the boolean mask ``blown`` diverged; they are not trained any further."""
        self.diverged |= blown
        self.active &= ~blown


def _train_epoch(model, optimizer: StackedAdam, runs: Sequence[Run], train: Sequence[dict], order_rngs: list,
                 banks: Sequence[_NegativeBank | None], status: RunStatus, device: Any) -> np.ndarray:
    """One epoch over each run's training sequences in its own order; per run mean task, transfer and
    total loss over the batches, then correct and scored response counts: ``(R, 5)``."""
    import torch

    n_train = len(runs[0].data.train_lengths)
    n_batches = int(np.ceil(n_train / runs[0].config.batch_size))
    batches = [np.array_split(rng.permutation(n_train), n_batches) for rng in order_rngs]
    sums = np.zeros((len(runs), 5))
    for b in range(n_batches):
        batch = _gather(train, [order[b] for order in batches], [run.data.train_lengths for run in runs], _TRAIN_FIELDS)
        batch["negatives"] = [None if bank is None else bank.sample(order[b]) for bank, order in zip(banks, batches)]
        outputs, embedding = model.forward(batch["inputs"], batch["steps"])
        task, transfer, total, correct, scored = _losses(outputs, embedding, batch, [run.config for run in runs])
        values = torch.stack([task.detach(), transfer.detach(), total.detach(), correct, scored]).cpu().numpy()
        status.stop(status.active & ~np.isfinite(values[2]))
        status.start_loss = np.where(np.isnan(status.start_loss) & status.active, values[2], status.start_loss)
        if not status.active.any():
            break
        model.zero_grad()
        total[torch.as_tensor(np.flatnonzero(status.active), device=total.device)].sum().backward()
        optimizer.step(model.gradients(), torch.as_tensor(status.active, device=device))
        sums[status.active] += values.T[status.active]
    sums[:, :3] /= n_batches
    return sums


def _losses(outputs, embedding, batch: dict, configs: Sequence[TrainConfig]):
    """Per-run task, transfer and total loss, correct and scored response counts, each ``(R,)``."""
    import torch

    from b2m_neuro.transfer import transfer_loss

    scored, targets = batch["scored"], batch["targets"]
    n_scored = scored.sum((1, 2))
    task = (((outputs - targets) ** 2) * scored).sum((1, 2)) / n_scored
    correct = (((outputs > 0) == (targets > 0)) & scored).sum((1, 2))
    transfer = torch.stack([
        transfer_loss(c.transfer, batch["brain"][r][batch["paired"][r]], embedding[r][batch["paired"][r]],
                      temperature=c.temperature, reduction=c.reduction, negatives=batch["negatives"][r])
        for r, c in enumerate(configs)])
    alpha = torch.tensor([c.alpha for c in configs], dtype=task.dtype, device=task.device)
    total = (1.0 - alpha) * task + alpha * transfer
    return task, transfer, total, correct.to(task.dtype), n_scored.to(task.dtype)


def _evaluate(model, test: Sequence[dict], runs: np.ndarray, lengths: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Test loss and accuracy (dropout off) of ``runs``; runs sharing a test set are evaluated together."""
    import torch

    loss, accuracy = np.full(len(test), np.nan), np.full(len(test), np.nan)
    by_test_set: dict[int, list[int]] = {}
    for r in runs:
        by_test_set.setdefault(id(test[r]), []).append(int(r))
    for members in by_test_set.values():
        tensors = test[members[0]]
        squared, correct, count = np.zeros(len(members)), np.zeros(len(members)), 0.0
        for rows in _chunks(len(lengths[members[0]])):
            batch = _gather([tensors], [rows], [lengths[members[0]]], _TEST_FIELDS)
            scored = batch["scored"][0]
            steps = torch.nonzero(scored.any(0)).flatten().tolist()
            outputs, _ = model.predict(batch["inputs"], members, steps, lengths[members[0]][rows])
            targets, scored = batch["targets"][0][:, steps], scored[:, steps]
            squared += (((outputs - targets) ** 2) * scored).sum((1, 2)).cpu().numpy()
            correct += (((outputs > 0) == (targets > 0)) & scored).sum((1, 2)).cpu().numpy()
            count += float(scored.sum())
        loss[members], accuracy[members] = squared / count, correct / count
    return loss, accuracy


def _alignment(model, train: Sequence[dict], runs: np.ndarray, lengths: Sequence[np.ndarray]) -> np.ndarray:
    """Linear CKA and RSA (:mod:`b2m_neuro.stats`) between each of ``runs``' aligned layer (dropout off)
    and its brain embedding over the paired time points of its training sequences: ``(R, 2)``.

    The training sequences are used because they are the ones with a brain embedding (the test
    sequences have none); runs sharing their training inputs (a brain-guided run and its shuffled
    control, say) are evaluated in one pass.
    """
    import torch

    from b2m_neuro.stats import linear_cka, rsa_similarity

    alignment = np.full((len(train), 2), np.nan)
    by_inputs: dict[tuple, list[int]] = {}
    for r in runs:
        by_inputs.setdefault((id(train[r]["inputs"]), id(train[r]["paired"])), []).append(int(r))
    for members in by_inputs.values():
        layer, brain = [], []
        for rows in _chunks(len(lengths[members[0]])):
            batch = _gather([train[r] for r in members], [rows] * len(members), [lengths[r] for r in members],
                            ("inputs", "brain", "paired"))
            paired = batch["paired"][0]
            steps = torch.nonzero(paired.any(0)).flatten().tolist()
            _, embedding = model.predict(batch["inputs"][:1], members, steps, lengths[members[0]][rows])
            paired = paired[:, steps]
            layer.append(embedding[:, paired].cpu().numpy())
            brain.append(batch["brain"][:, :, steps][:, paired].cpu().numpy())
        layer, brain = np.concatenate(layer, axis=1), np.concatenate(brain, axis=1)
        for r, run_layer, run_brain in zip(members, layer, brain):
            alignment[r] = linear_cka(run_layer, run_brain), rsa_similarity(run_layer, run_brain)
    return alignment


def _chunks(n_rows: int) -> list[np.ndarray]:
    """Row indices ``0 .. n_rows - 1`` in evaluation chunks of at most :data:`EVAL_CHUNK` rows."""
    return [np.arange(start, min(start + EVAL_CHUNK, n_rows)) for start in range(0, n_rows, EVAL_CHUNK)]


def _gather(tensors: Sequence[dict], rows: Sequence[np.ndarray], lengths: Sequence[np.ndarray],
            fields: Sequence[str]) -> dict:
    """Run r's rows of its tensors, padded at the end to the longest sequence of any run: ``(R, B, T, ...)``.

    ``"steps"`` holds each run's own batch length (its longest sequence).
    """
    import torch

    steps = [int(length[row].max()) for length, row in zip(lengths, rows)]
    longest = max(steps)
    batch = {"steps": steps}
    shared = all(t is tensors[0] for t in tensors)
    for field in fields:
        if shared:
            index = torch.as_tensor(np.stack(rows), device=tensors[0][field].device)
            batch[field] = tensors[0][field][index, :longest]
        else:
            parts = [_pad_to(t[field][torch.as_tensor(row, device=t[field].device), :longest], longest)
                     for t, row in zip(tensors, rows)]
            batch[field] = torch.stack(parts)
    return batch


def _pad_to(tensor, steps: int):
    import torch

    if tensor.shape[1] == steps:
        return tensor
    padding = tensor.new_zeros((tensor.shape[0], steps - tensor.shape[1]) + tuple(tensor.shape[2:]))
    return torch.cat([tensor, padding], dim=1)


class _TensorPool:
    """Device copies of a task's arrays, one per distinct content (runs usually share theirs)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._by_content: dict[tuple, Any] = {}
        self._by_id: dict[int, tuple] = {}
        self._by_fields: dict[tuple, dict] = {}

    def tensors(self, data: TaskData, split: str) -> dict:
        """The ``split`` ("train" or "test") tensors of ``data``; the same dict for equal contents."""
        fields = _TRAIN_FIELDS if split == "train" else _TEST_FIELDS
        tensors = {field: self._tensor(getattr(data, f"{split}_{field}")) for field in fields}
        key = tuple(id(tensor) for tensor in tensors.values())
        return self._by_fields.setdefault(key, tensors)

    def _tensor(self, array: np.ndarray):
        import torch

        known = self._by_id.get(id(array))
        if known is not None and known[0] is array:  # the same array object: no need to hash it again
            return known[1]
        key = content_key(array)
        if key not in self._by_content:
            self._by_content[key] = torch.as_tensor(np.ascontiguousarray(array), device=self.device)
        self._by_id[id(array)] = (array, self._by_content[key])
        return self._by_content[key]


def seeded_generator(seed: int, device: Any, stream: int = 2):
    """A run's torch generator seeded from its seed: ``stream`` 2 draws dropout, 3 the negatives
    (streams separate from the weights and the episode order)."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.SeedSequence([int(seed), stream]).generate_state(1, np.uint64)[0]))
    return generator


class _NegativeBank:
    """A run's paired training brain rows, from which each step draws ``config.negatives`` rows of the
    sequences outside the batch (see :class:`TrainConfig`), with the run's own generator."""

    def __init__(self, tensors: dict, lengths: np.ndarray, config: TrainConfig) -> None:
        import torch

        if len(lengths) < 2:
            raise TrainingError("negatives from other episodes need at least 2 training sequences", field="negatives",
                                fix="pass negatives=0, or train on more episodes")
        paired = tensors["paired"]
        self.rows = tensors["brain"][paired]  # (N, latent), ordered by sequence
        self.sequence = torch.nonzero(paired)[:, 0].cpu()
        self.count = int(config.negatives)
        self.generator = seeded_generator(config.seed, "cpu", stream=3)

    def sample(self, batch_rows: np.ndarray):
        """``count`` rows, drawn uniformly with replacement from the sequences not in ``batch_rows``."""
        import torch

        outside = torch.nonzero(~torch.isin(self.sequence, torch.as_tensor(batch_rows))).flatten()
        drawn = outside[torch.randint(len(outside), (self.count,), generator=self.generator)]
        return self.rows[drawn.to(self.rows.device)]


def history_dataset(history: dict, diverged: bool, *, descriptions: dict[str, str] = HISTORY_VARIABLES) -> xr.Dataset:
    """A run's history, ``{variable: (epochs,) values}``, as an ``xarray.Dataset`` over ``epoch`` (1, 2, ...),
    each variable described from ``descriptions``."""
    import xarray as xr

    epochs = len(next(iter(history.values())))
    dataset = xr.Dataset(
        {name: ("epoch", values, {"description": descriptions[name]}) for name, values in history.items()},
        coords={"epoch": np.arange(1, epochs + 1)},
    )
    dataset["wall_time"].attrs["units"] = "s"
    dataset.attrs["diverged"] = int(diverged)
    return dataset


def _cache_bytes() -> int:
    """Size of the CPU's last-level cache, from ``/sys`` (32 MiB when unknown)."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or _FALLBACK_CACHE_BYTES
