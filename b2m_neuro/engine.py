"""The training loop, for R >= 1 independent runs at once: ``fit_runs([Run(...), ...])``.

Every run keeps its own seed, episode order, dropout masks, Adam state, alpha, transfer loss, learning
rate and weight decay, and its history does not depend on which other runs share its group (up to
float rounding). :func:`b2m_neuro.train` is this loop with R = 1.

How runs are batched
--------------------
Runs of the reference GRU (:class:`b2m_neuro.models.gru.ReferenceGRU`) whose shapes agree (hidden
size, input and latent widths, number of training sequences and batch size) are *grouped*: their
weights are stacked along a leading run dimension, ``(R, 3H, I)``, ``(R, 3H, H)``, ..., and one
forward pass computes all of them with batched matrix products. The recurrent layer is
:func:`stacked_gru`, a hand-written GRU (PyTorch's equations, so it matches ``nn.GRU``) whose backward
pass through time carries only the gradient of the hidden state from step to step and forms the
weight gradients ``dW_hh = sum_t dgates_t^T h_(t-1)`` with one batched matrix product over all time
steps at the end. (Autograd, or ``vmap``, through a stacked loop builds a full ``dW_hh`` at every
step, which makes it slower than sequential ``nn.GRU`` runs.)

Group size (:func:`auto_group_size`): with one sequence per batch, every time step reads each run's
recurrent weights once (forward and backward), so the work is bound by memory bandwidth and grouping
pays only while the group's weights stay in cache between steps (and by sharing each step's
Python and dispatch overhead among the runs). On a CPU a group holds as many runs as fit their
recurrent weights (``4 * 3H * (H + I)`` bytes each) into 1/8 of the last-level cache, at least one:
with a 32 MiB L3, 1 run of hidden 512 (3 MiB each) or 21 runs of hidden 128. The fraction was
measured on a busy 2-core EPYC (L3 shared with other processes), where groups of 4 runs of hidden
512 were 20-40 % slower per run than single runs and hidden 128 peaked at 8-16 runs per group; pass
``group_size=`` to override. Larger sweeps are trained as several groups, one after the other. On a
GPU a group holds every compatible run, limited only by the memory the saved activations need.
Where ``nn.GRU`` is faster (a lone run on CUDA, where cuDNN fuses the whole sequence), a group of
one run uses it instead (``backend="auto"``). Within a batch, runs are processed in order of
decreasing sequence length, so a run stops costing anything once its own sequence has ended.

Any other student (a user ``torch.nn.Module``) is trained alone (R = 1) through its own forward pass;
its dropout, if any, draws from torch's global random generator (seeded by :func:`b2m_neuro.train`).

Semantics of one run (identical to the single-run loop it replaces)
-------------------------------------------------------------------
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

torch is imported at the top of this module: only :mod:`b2m_neuro.training` and
:mod:`b2m_neuro.sweeps` import it, inside their functions, so ``import b2m_neuro`` stays light.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.autograd.function import once_differentiable

from b2m_neuro._util.progress import track
from b2m_neuro.errors import TrainingError
from b2m_neuro.tasks import TaskData
from b2m_neuro.training import HISTORY_VARIABLES, TrainConfig, _history_dataset

__all__ = ["Run", "fit_runs", "plan_groups", "auto_group_size", "stacked_gru", "StackedAdam", "BACKENDS"]

#: ``backend=`` values: "auto", "stacked" (hand-written batched GRU), "nn.GRU" (one nn.GRU call per run).
BACKENDS = ("auto", "stacked", "nn.GRU")
EVAL_CHUNK = 256  # test sequences per evaluation pass
_FALLBACK_CACHE_BYTES = 32 * 2**20
_GI_BLOCK_BYTES = 64 * 2**20  # input projections computed this many bytes at a time
_TRAIN_FIELDS = ("inputs", "targets", "scored", "brain", "paired")
_TEST_FIELDS = ("inputs", "targets", "scored")


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
        ``"auto"``, ``"stacked"`` (the hand-written batched GRU) or ``"nn.GRU"`` (one ``nn.GRU``
        call per run); see the module docstring.
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
    """Indices of ``runs`` trained together: compatible reference GRUs in groups, other students alone.

    Runs are compatible when their hidden size, input width, latent width, number of training
    sequences and batch size agree; each set of compatible runs is cut into groups of at most
    ``group_size`` runs (:func:`auto_group_size` when ``None``), keeping the order of ``runs``.
    """
    device = torch.device(device)
    buckets: dict[Any, list[int]] = {}
    for index, run in enumerate(runs):
        key = _stack_key(run)
        buckets.setdefault(key if key is not None else ("alone", index), []).append(index)
    groups = []
    for key, members in buckets.items():
        if key[0] == "alone":
            groups.append(members)
            continue
        hidden, n_inputs, batch_size = key[1], key[2], key[5]
        max_steps = max(int(runs[i].data.train_lengths.max()) for i in members)
        size = group_size or auto_group_size(hidden, n_inputs, device=device, n_runs=len(members),
                                             max_steps=max_steps, batch_size=batch_size)
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
    device = torch.device(device)
    if device.type == "cpu":
        per_run = 4 * 3 * hidden_size * (hidden_size + n_inputs)
        return max(1, min(n_runs, (_cache_bytes() // 8) // per_run))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_run = 4 * 20 * hidden_size * max_steps * batch_size
        return max(1, min(n_runs, (free // 2) // per_run))
    return max(1, n_runs)


# --- the hand-written, stacked GRU -------------------------------------------------------------


def stacked_gru(inputs: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor, lengths: Sequence[int] | None = None) -> torch.Tensor:
    """R independent one-layer GRUs (PyTorch's equations, zero initial state) in one pass.

    Parameters
    ----------
    inputs
        ``(R, batch, time, I)``.
    w_ih, w_hh, b_ih, b_hh
        ``(R, 3H, I)``, ``(R, 3H, H)``, ``(R, 3H)``, ``(R, 3H)``: per run, the ``weight_ih_l0``,
        ``weight_hh_l0``, ``bias_ih_l0`` and ``bias_hh_l0`` of an ``nn.GRU`` (gates r, z, n).
    lengths
        Optional steps per run: run r is only computed for its first ``lengths[r]`` steps (its
        later outputs are 0), so runs with short sequences do not pay for the longest one.

    Returns
    -------
    torch.Tensor
        ``(R, batch, time, H)``, run r's ``nn.GRU(batch_first=True)`` output sequence. Differentiable
        with respect to the inputs and the weights.

    Examples
    --------
    >>> gru = torch.nn.GRU(3, 5, batch_first=True)
    >>> weights = [p.detach()[None] for p in gru.parameters()]  # R = 1
    >>> x = torch.randn(1, 2, 4, 3)
    >>> torch.allclose(stacked_gru(x, *weights)[0], gru(x[0])[0], atol=1e-6)
    True
    """
    steps = inputs.shape[2]
    lengths = np.full(w_hh.shape[0], steps) if lengths is None else np.minimum(np.asarray(lengths, int), steps)
    return _StackedGRUFunction.apply(inputs, w_ih, w_hh, b_ih, b_hh, lengths)


class _StackedGRUFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`_gru_forward` / :func:`_gru_backward`.

    Runs are put in order of decreasing length, so that the runs still going at step t are a
    leading slice ``[:k]`` of every stacked tensor; outputs and gradients are put back in order.
    """

    @staticmethod
    def forward(ctx, inputs, w_ih, w_hh, b_ih, b_hh, lengths):
        order = np.argsort(-lengths, kind="stable")
        ctx.order = torch.as_tensor(order, device=w_hh.device)
        ctx.restore = torch.as_tensor(np.argsort(order), device=w_hh.device)
        ctx.active = (lengths[order][None, :] > np.arange(inputs.shape[2])[:, None]).sum(1).tolist()
        inputs, w_ih, w_hh, b_ih, b_hh = (tensor[ctx.order] for tensor in (inputs, w_ih, w_hh, b_ih, b_hh))
        w_hh_t = w_hh.transpose(1, 2).contiguous()
        hidden, rz, n, gh = _gru_forward(inputs, w_ih, w_hh_t, b_ih, b_hh, active=ctx.active)
        ctx.save_for_backward(inputs, w_ih, w_hh_t, hidden, rz, n, gh)
        return hidden[1:].permute(1, 2, 0, 3)[ctx.restore]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        inputs, w_ih, w_hh_t, hidden, rz, n, gh = ctx.saved_tensors
        grads = _gru_backward(grad_output[ctx.order], inputs, w_ih, w_hh_t, hidden, rz, n, gh, active=ctx.active,
                              input_grad=ctx.needs_input_grad[0])
        return *(None if grad is None else grad[ctx.restore] for grad in grads), None


def _gru_forward(inputs, w_ih, w_hh_t, b_ih, b_hh, *, active: list[int] | None = None,
                 keep_steps: list[int] | None = None):
    """The time loop, on time-major buffers ``(T, R, B, ...)`` so that each step works on contiguous memory.

    ``w_hh_t`` is ``w_hh`` transposed, ``(R, H, 3H)``, contiguous (read once per step; that layout
    reads fastest). ``active[t]``: step t is computed for runs ``[:active[t]]`` only (runs sorted by
    decreasing length). Training (``keep_steps=None``): returns ``hidden (T + 1, R, B, H)``
    (``hidden[0]`` is the zero initial state) and, for the backward pass, the gates
    ``r|z (T, R, B, 2H)``, ``n (T, R, B, H)`` and ``gh (T, R, B, 3H)`` whose last H columns are
    ``W_hn h + b_hn`` (zeros where a run was not computed). Evaluation (``keep_steps``, time indices;
    all runs active): returns only the hidden states after those steps, ``(len(keep_steps), R, B, H)``.
    """
    runs, size = w_hh_t.shape[0], w_hh_t.shape[1]
    batch, steps = inputs.shape[1], inputs.shape[2]
    new = dict(dtype=w_hh_t.dtype, device=w_hh_t.device)
    training = keep_steps is None
    if training:
        hidden = torch.zeros(steps + 1, runs, batch, size, **new)
        rz = torch.zeros(steps, runs, batch, 2 * size, **new)
        n = torch.zeros(steps, runs, batch, size, **new)
        gh = torch.zeros(steps, runs, batch, 3 * size, **new)
        hidden_at, rz_at, n_at, gh_at = hidden.unbind(0), rz.unbind(0), n.unbind(0), gh.unbind(0)
    else:
        kept = torch.empty(len(keep_steps), runs, batch, size, **new)
        slot_of = {step: slot for slot, step in enumerate(keep_steps)}
    h = torch.zeros(runs, batch, size, **new)
    for start, (offsets, input_n) in _input_projections(inputs, w_ih, b_ih, b_hh):
        for t, (offset_t, input_n_t) in enumerate(zip(offsets.unbind(0), input_n.unbind(0)), start):
            if training:
                k = active[t]
                gh_t = torch.baddbmm(offset_t[:k], hidden_at[t][:k], w_hh_t[:k], out=gh_at[t][:k])
                rz_t = torch.sigmoid(gh_t[..., : 2 * size], out=rz_at[t][:k])
                n_t = torch.addcmul(input_n_t[:k], rz_t[..., :size], gh_t[..., 2 * size:])
                n_t = torch.tanh(n_t, out=n_at[t][:k])
                torch.lerp(n_t, hidden_at[t][:k], rz_t[..., size:], out=hidden_at[t + 1][:k])
            else:
                gh_t = torch.baddbmm(offset_t, h, w_hh_t)
                rz_t = gh_t[..., : 2 * size].sigmoid_()
                n_t = torch.addcmul(input_n_t, rz_t[..., :size], gh_t[..., 2 * size:]).tanh_()
                h = torch.lerp(n_t, h, rz_t[..., size:])
                if t in slot_of:
                    kept[slot_of[t]] = h
    return (hidden, rz, n, gh) if training else kept


def _input_projections(inputs, w_ih, b_ih, b_hh):
    """The input terms of each step, time-major, in time blocks of bounded size.

    Yields ``(start, (offsets, input_n))``: ``offsets (block, R, B, 3H)`` is what the recurrent
    product is added to (``W_ir x + b_ir + b_hr``, ``W_iz x + b_iz + b_hz``, ``b_hn``) and
    ``input_n (block, R, B, H)`` is ``W_in x + b_in``.
    """
    runs, gates = w_ih.shape[0], w_ih.shape[1]
    size = gates // 3
    batch, steps, width = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    block = max(1, _GI_BLOCK_BYTES // (4 * runs * batch * (gates + size)))
    w_ih_t = w_ih.transpose(1, 2)
    bias_rz = (b_ih[:, : 2 * size] + b_hh[:, : 2 * size]).view(1, runs, 1, 2 * size)
    bias_hn, bias_in = b_hh[:, 2 * size:].view(1, runs, 1, size), b_ih[:, 2 * size:].view(1, runs, 1, size)
    for start in range(0, steps, block):
        x = inputs[:, :, start:start + block].transpose(1, 2)  # (R or 1, block, B, I)
        stop = x.shape[1]
        flat = x.reshape(x.shape[0], stop * batch, width).expand(runs, -1, -1)
        projected = torch.bmm(flat, w_ih_t).view(runs, stop, batch, gates).transpose(0, 1)  # (block, R, B, 3H)
        offsets = torch.empty(stop, runs, batch, gates, dtype=projected.dtype, device=projected.device)
        torch.add(projected[..., : 2 * size], bias_rz, out=offsets[..., : 2 * size])
        offsets[..., 2 * size:] = bias_hn
        yield start, (offsets, projected[..., 2 * size:] + bias_in)


def _gru_backward(grad_output, inputs, w_ih, w_hh_t, hidden, rz, n, gh, *, active: list[int], input_grad: bool):
    """Backward through time carrying only ``dL/dh``; weight gradients by one matmul over all steps."""
    runs, size = w_hh_t.shape[0], w_hh_t.shape[1]
    steps, batch = rz.shape[0], rz.shape[2]
    r, z = rz[..., :size], rz[..., size:]
    previous = hidden[:-1]
    # dL/dh_t times these factors gives the gradients of the gate pre-activations (all forward-only)
    to_n = (1 - z) * (1 - n * n)                          # -> d(W_in x + b_in + r * (W_hn h + b_hn))
    factors = torch.cat([to_n * gh[..., 2 * size:] * r * (1 - r),   # -> d(r pre-activation)
                         (previous - n) * z * (1 - z),              # -> d(z pre-activation)
                         to_n * r], dim=-1)                         # -> d(W_hn h + b_hn)
    # dL/dh_t (T, R, B, H), completed from the last step; steps a run did not compute get none
    grad_h = grad_output.permute(2, 0, 1, 3).contiguous()
    for t in np.flatnonzero(np.diff(active)) + 1:
        grad_h[t:, active[t]:] = 0
    grad_gh = torch.zeros_like(gh)
    factors_at = factors.view(steps, runs, batch, 3, size).unbind(0)
    grad_gh_at = grad_gh.view(steps, runs, batch, 3, size).unbind(0)
    grad_h_at = grad_h.unsqueeze(3).unbind(0)  # (R, B, 1, H) each
    # dh_(t-1) += dh_t * z_t + dgh_t @ W_hh, in the W_hh^T layout (a transposed out is free for B = 1)
    out_at = grad_h.transpose(2, 3).unbind(0)  # (R, H, B) each
    z_at = z.unbind(0)
    for t in range(steps - 1, -1, -1):
        k = active[t]
        torch.mul(factors_at[t][:k], grad_h_at[t][:k], out=grad_gh_at[t][:k])
        if t:
            carried = torch.addcmul(grad_h[t - 1][:k], grad_h[t][:k], z_at[t][:k])
            torch.baddbmm(carried.transpose(1, 2), w_hh_t[:k], grad_gh[t][:k].transpose(1, 2), out=out_at[t - 1][:k])
    grad_gi = torch.cat([grad_gh[..., : 2 * size], grad_h * to_n], dim=-1)
    time_major_inputs = inputs.transpose(1, 2).transpose(0, 1)  # (T, R, B, I)
    grad_w_hh = torch.einsum("trbg,trbh->rgh", grad_gh, previous)
    grad_w_ih = torch.einsum("trbg,trbi->rgi", grad_gi, time_major_inputs)
    grad_b_hh = grad_gh.sum((0, 2))
    grad_b_ih = grad_gi.sum((0, 2))
    grad_inputs = torch.einsum("trbg,rgi->rbti", grad_gi, w_ih) if input_grad else None
    return grad_inputs, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


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
        self.params = list(params)
        self.lr = np.asarray(lr, dtype=np.float64)
        reference = self.params[0]
        self.weight_decay = torch.as_tensor(np.asarray(weight_decay, np.float64), dtype=reference.dtype,
                                            device=reference.device)
        self.betas, self.eps = betas, eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def step(self, grads: Sequence[torch.Tensor | None], active: torch.Tensor | None = None) -> None:
        """One Adam step with ``grads`` (``None`` for a tensor without gradient: skipped).

        ``active`` is a boolean ``(R,)`` tensor; inactive runs are not updated.
        """
        beta1, beta2 = self.betas
        self.steps += 1
        correction1 = 1 - beta1 ** self.steps
        correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        reference = self.params[0]
        step_size = torch.as_tensor(self.lr / correction1, device=reference.device).to(reference.dtype)
        if active is not None:
            step_size = step_size * active.to(reference.dtype)
        with torch.no_grad():
            for param, grad, exp_avg, exp_avg_sq in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
                if grad is None:
                    continue
                shape = (-1,) + (1,) * (param.ndim - 1)
                grad = grad + self.weight_decay.view(shape) * param
                if active is not None:
                    grad = torch.where(active.view(shape), grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
                param.sub_(step_size.view(shape) * exp_avg / denom)


# --- models of a group -------------------------------------------------------------------------


def _stack_key(run: Run) -> tuple | None:
    """The shape key of a stackable reference-GRU run, ``None`` for any other student."""
    from b2m_neuro.models.gru import ReferenceGRU

    network = getattr(run.student, "model", None)
    if type(network) is not ReferenceGRU or run.student.align_layer != "embedding":
        return None
    gru = network.gru
    return ("gru", gru.hidden_size, gru.input_size, network.embedding.out_features,
            len(run.data.train_lengths), int(run.config.batch_size))


class _StackedGRUs:
    """R reference GRUs with weights stacked along a leading run dimension."""

    _NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "w_emb", "b_emb", "w_out", "b_out")

    def __init__(self, students: Sequence[Any], configs: Sequence[TrainConfig], device: Any, backend: str) -> None:
        networks = [student.model for student in students]
        self.students = students
        self.device = device
        modules = [(n.gru.weight_ih_l0, n.gru.weight_hh_l0, n.gru.bias_ih_l0, n.gru.bias_hh_l0, n.embedding.weight,
                    n.embedding.bias, n.output.weight, n.output.bias) for n in networks]
        self.weights = {name: torch.stack([m[i].detach() for m in modules]).to(device).requires_grad_()
                        for i, name in enumerate(self._NAMES)}
        self.dropout = [float(n.dropout.p) for n in networks]
        self.output_range = torch.tensor([float(n.output_range) for n in networks], device=device).view(-1, 1, 1)
        self.generators = [_seeded_generator(config.seed, device) for config in configs]
        if backend == "auto":
            backend = "nn.GRU" if device.type == "cuda" and len(students) == 1 else "stacked"
        self.backend = backend
        if backend == "nn.GRU":
            self.template = torch.nn.GRU(networks[0].gru.input_size, networks[0].gru.hidden_size, batch_first=True).to(device)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return list(self.weights.values())

    def gradients(self) -> list[torch.Tensor | None]:
        return [weight.grad for weight in self.weights.values()]

    def zero_grad(self) -> None:
        for weight in self.weights.values():
            weight.grad = None

    def forward(self, inputs: torch.Tensor, lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: ``inputs (R, B, T, I)`` -> outputs ``(R, B, T)``, aligned layer ``(R, B, T, L)``.

        Run r's dropout mask covers its own ``(B, lengths[r], H)`` steps, drawn from its generator.
        """
        hidden = self._recurrent(inputs, self.weights, lengths)
        return self._head(hidden * self._dropout_scale(hidden.shape, lengths), self.weights)

    def predict(self, inputs: torch.Tensor, runs: Sequence[int], steps: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation pass (dropout off) of ``runs`` on shared ``inputs (1, B, T, I)`` at ``steps``:
        outputs ``(R', B, len(steps))`` and aligned layer ``(R', B, len(steps), L)``."""
        weights = {name: value.detach()[list(runs)] for name, value in self.weights.items()}
        with torch.no_grad():
            if self.backend == "stacked":
                kept = _gru_forward(inputs, weights["w_ih"], weights["w_hh"].transpose(1, 2).contiguous(),
                                    weights["b_ih"], weights["b_hh"], keep_steps=list(steps))
                hidden = kept.permute(1, 2, 0, 3)
            else:
                hidden = self._recurrent(inputs.expand(len(runs), -1, -1, -1), weights)[:, :, list(steps)]
            return self._head(hidden, weights, self.output_range[list(runs)])

    def finite(self) -> np.ndarray:
        with torch.no_grad():
            flags = torch.stack([torch.isfinite(w.detach()).flatten(1).all(1) for w in self.weights.values()]).all(0)
        return flags.cpu().numpy()

    def write_back(self) -> None:
        """Copy each run's trained weights into its student."""
        with torch.no_grad():
            for index, student in enumerate(self.students):
                n = student.model
                targets = (n.gru.weight_ih_l0, n.gru.weight_hh_l0, n.gru.bias_ih_l0, n.gru.bias_hh_l0,
                           n.embedding.weight, n.embedding.bias, n.output.weight, n.output.bias)
                for target, name in zip(targets, self._NAMES):
                    target.copy_(self.weights[name][index])

    def _recurrent(self, inputs, weights, lengths=None):
        names = ("w_ih", "w_hh", "b_ih", "b_hh")
        if self.backend == "stacked":
            return stacked_gru(inputs, *(weights[name] for name in names), lengths=lengths)
        torch_names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        outputs = [torch.func.functional_call(self.template, {t: weights[n][r] for t, n in zip(torch_names, names)},
                                              (inputs[r],))[0] for r in range(inputs.shape[0])]
        return torch.stack(outputs)

    def _dropout_scale(self, shape, lengths: Sequence[int]):
        runs, batch, steps, size = shape
        scale = torch.ones(shape, device=self.device)
        for r, (p, generator) in enumerate(zip(self.dropout, self.generators)):
            if p == 0:
                continue
            if p == 1:
                scale[r] = 0.0
                continue
            mask = torch.empty(batch, int(lengths[r]), size, device=self.device).bernoulli_(1 - p, generator=generator)
            scale[r, :, : int(lengths[r])] = mask / (1 - p)
        return scale

    def _head(self, hidden, weights, output_range=None):
        """Embedding layer (the aligned one) and scaled-sigmoid output of ``hidden (R, B, T, H)``."""
        runs, batch, steps, size = hidden.shape
        flat = hidden.reshape(runs, batch * steps, size)
        embedding = torch.baddbmm(weights["b_emb"].unsqueeze(1), flat, weights["w_emb"].transpose(1, 2))
        logit = torch.baddbmm(weights["b_out"].unsqueeze(1), embedding, weights["w_out"].transpose(1, 2))
        output_range = self.output_range if output_range is None else output_range
        outputs = output_range * (2.0 * torch.sigmoid(logit) - 1.0)
        return outputs.view(runs, batch, steps), embedding.view(runs, batch, steps, -1)


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

    def predict(self, inputs: torch.Tensor, runs: Sequence[int], steps: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        self.student.eval()
        with torch.no_grad():
            outputs, embedding = self.student(inputs[0])
        return outputs[:, list(steps)].unsqueeze(0), embedding[:, list(steps)].unsqueeze(0)

    def finite(self) -> np.ndarray:
        return np.array([all(bool(torch.isfinite(p).all()) for p in self.student.parameters())])

    def write_back(self) -> None:
        """Nothing to do: the student's own parameters were trained."""


# --- the loop ----------------------------------------------------------------------------------


def _train_group(runs: Sequence[Run], device: Any, backend: str, progress: bool) -> list[tuple[xr.Dataset, bool]]:
    """Train one group (compatible runs, or one lone student) with the shared loop."""
    configs = [run.config for run in runs]
    if _stack_key(runs[0]) is None:
        model = _SingleModule(runs[0].student)
    else:
        model = _StackedGRUs([run.student for run in runs], configs, device, backend)
    pool = _TensorPool(device)
    train = [pool.tensors(run.data, "train") for run in runs]
    test = [pool.tensors(run.data, "test") for run in runs]
    optimizer = StackedAdam(model.parameters, lr=[c.lr for c in configs], weight_decay=[c.weight_decay for c in configs])
    order_rngs = [np.random.default_rng(c.seed) for c in configs]
    epochs = np.array([c.epochs for c in configs])
    history = [{name: np.full(c.epochs, np.nan) for name in HISTORY_VARIABLES} for c in configs]
    status = _Status(len(runs))
    start = time.perf_counter()
    description = f"training {len(runs)} runs" if len(runs) > 1 else "training"
    for epoch in track(range(int(epochs.max())), description=description, total=int(epochs.max()), progress=progress):
        status.active &= epoch < epochs
        if not status.active.any():
            break
        sums = _train_epoch(model, optimizer, runs, train, order_rngs, status, device)
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
    return [(_history_dataset(history[r], bool(status.diverged[r])), bool(status.diverged[r])) for r in range(len(runs))]


class _Status:
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
                 status: _Status, device: Any) -> np.ndarray:
    """One epoch over each run's training sequences in its own order; per run mean task, transfer and
    total loss over the batches, then correct and scored response counts: ``(R, 5)``."""
    n_train = len(runs[0].data.train_lengths)
    n_batches = int(np.ceil(n_train / runs[0].config.batch_size))
    batches = [np.array_split(rng.permutation(n_train), n_batches) for rng in order_rngs]
    sums = np.zeros((len(runs), 5))
    for b in range(n_batches):
        batch = _gather(train, [order[b] for order in batches], [run.data.train_lengths for run in runs], _TRAIN_FIELDS)
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
    from b2m_neuro.transfer import transfer_loss

    scored, targets = batch["scored"], batch["targets"]
    n_scored = scored.sum((1, 2))
    task = (((outputs - targets) ** 2) * scored).sum((1, 2)) / n_scored
    correct = (((outputs > 0) == (targets > 0)) & scored).sum((1, 2))
    transfer = torch.stack([
        transfer_loss(c.transfer, batch["brain"][r][batch["paired"][r]], embedding[r][batch["paired"][r]],
                      temperature=c.temperature, reduction=c.reduction)
        for r, c in enumerate(configs)])
    alpha = torch.tensor([c.alpha for c in configs], dtype=task.dtype, device=task.device)
    total = (1.0 - alpha) * task + alpha * transfer
    return task, transfer, total, correct.to(task.dtype), n_scored.to(task.dtype)


def _evaluate(model, test: Sequence[dict], runs: np.ndarray, lengths: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Test loss and accuracy (dropout off) of ``runs``; runs sharing a test set are evaluated together."""
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
            outputs, _ = model.predict(batch["inputs"], members, steps)
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
            _, embedding = model.predict(batch["inputs"][:1], members, steps)
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
        known = self._by_id.get(id(array))
        if known is not None and known[0] is array:  # the same array object: no need to hash it again
            return known[1]
        contiguous = np.ascontiguousarray(array)
        key = (contiguous.shape, contiguous.dtype.str, hashlib.blake2b(contiguous.data, digest_size=16).digest())
        if key not in self._by_content:
            self._by_content[key] = torch.as_tensor(contiguous, device=self.device)
        self._by_id[id(array)] = (array, self._by_content[key])
        return self._by_content[key]


def _seeded_generator(seed: int, device: Any):
    """The run's dropout generator, seeded from its seed (a stream separate from weights and order)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.SeedSequence([int(seed), 2]).generate_state(1, np.uint64)[0]))
    return generator


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
