"""R reference GRUs in one pass: :func:`stacked_gru` and :class:`StackedReferenceGRUs`.

The training engine (:func:`b2m_neuro.engine.fit_runs`) trains runs of the reference GRU
(:class:`b2m_neuro.models.gru.ReferenceGRU`) whose shapes agree as one *group*: their weights are
stacked along a leading run dimension, ``(R, 3H, I)``, ``(R, 3H, H)``, ..., and one forward pass
computes all of them with batched matrix products.

The recurrent layer is :func:`stacked_gru`, a hand-written GRU (PyTorch's equations, so it matches
``nn.GRU``) whose backward pass through time carries only the gradient of the hidden state from step
to step and forms the weight gradients ``dW_hh = sum_t dgates_t^T h_(t-1)`` at the end, with one matrix
product per run over all its time steps. (Autograd, or ``vmap``, through a stacked loop builds a full
``dW_hh`` at every step, which makes it slower than sequential ``nn.GRU`` runs.) Runs are processed
in order of decreasing sequence length, so a run stops costing anything once its own sequence has
ended. On a CPU the forward and backward time loops run as compiled code where a C++ compiler works
(:mod:`b2m_neuro.models.gru_kernel`); elsewhere, and with ``compiled=False``, as torch operations.

:class:`StackedReferenceGRUs` is the group form of R reference GRUs (what
:meth:`ReferenceGRU.stack` builds): the stacked weights, per-run dropout, the embedding and output
layers, and copying the trained weights back into each network. It follows the engine's model
protocol (see :mod:`b2m_neuro.engine`).

torch is imported at the top of this file: only :mod:`b2m_neuro.models.gru` imports it, never
``import b2m_neuro``.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from b2m_neuro.models import gru_kernel

__all__ = ["stacked_gru", "StackedReferenceGRUs", "Workspace"]

_PROJECTION_BLOCK_BYTES = 512 * 2**10  # input projections: a reused buffer of this size, some steps at a time


def stacked_gru(inputs: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor, lengths: Sequence[int] | None = None, workspace: Workspace | None = None,
                compiled: bool | None = None) -> torch.Tensor:
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
    workspace
        Optional :class:`Workspace` whose buffers hold the pass's time-major activations (kept for
        the backward pass) and the backward pass's gate gradients, used again by the next call
        with the same workspace. The backward pass of one call must come before the next call's
        forward pass (else autograd refuses it: the saved activations were overwritten).
    compiled
        Run the time loops as compiled code (:mod:`b2m_neuro.models.gru_kernel`; CPU tensors, float32 or
        float64): ``None`` (default) where it can, ``False`` never (torch operations step by step; the same
        results to rounding), ``True`` always (``ValueError`` where it cannot).

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
    if compiled is None:
        compiled = gru_kernel.supports(w_hh)
    elif compiled and not gru_kernel.supports(w_hh):
        raise ValueError(f"no compiled GRU loops for {w_hh.dtype} tensors on {w_hh.device} (they take float32 or "
                         "float64 on a CPU, and need a C++ compiler: see b2m_neuro.models.gru_kernel)")
    return _StackedGRUFunction.apply(inputs, w_ih, w_hh, b_ih, b_hh, lengths, workspace or Workspace(), compiled)


class Workspace:
    """Buffers that :func:`stacked_gru` keeps from one call to the next, by name.

    A training step of 16 runs of 200 steps at hidden 128 needs about 15 MB of activations and gate
    gradients; allocated afresh at every step, much of that memory came back from the operating
    system a page at a time (a page fault every 4 KiB), which cost more than filling it.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def empty(self, name: str, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """A contiguous tensor of ``shape`` (dtype and device of ``like``), uninitialised, in the buffer ``name``
        (grown when too small)."""
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffers[name] = torch.empty(size, dtype=like.dtype, device=like.device)
        return buffer[:size].view(*shape)


class _StackedGRUFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`_gru_forward` / :func:`_gru_backward`.

    Runs are put in order of decreasing length, so that the runs still going at step t are a
    leading slice ``[:k]`` of every stacked tensor; outputs and gradients are put back in order
    (``index_select``: 5x faster than indexing with a tensor, for the 16 x 3H x H recurrent weights).
    """

    @staticmethod
    def forward(ctx, inputs, w_ih, w_hh, b_ih, b_hh, lengths, workspace, compiled):
        order = np.argsort(-lengths, kind="stable")
        ctx.order = torch.as_tensor(order, device=w_hh.device)
        ctx.restore = torch.as_tensor(np.argsort(order), device=w_hh.device)
        ctx.lengths = lengths[order].tolist()
        ctx.active = (lengths[order][None, :] > np.arange(inputs.shape[2])[:, None]).sum(1).tolist()
        inputs, w_ih, w_hh, b_ih, b_hh = (tensor.index_select(0, ctx.order) for tensor in (inputs, w_ih, w_hh, b_ih, b_hh))
        ctx.workspace, ctx.compiled = workspace, compiled
        hidden, n, gates = _gru_forward(inputs, w_ih, w_hh.transpose(1, 2).contiguous(), b_ih, b_hh,
                                        active=ctx.active, lengths=ctx.lengths, workspace=workspace, compiled=compiled)
        ctx.save_for_backward(inputs, w_ih, w_hh, hidden, n, gates)
        return hidden[1:].permute(1, 2, 0, 3).index_select(0, ctx.restore)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        inputs, w_ih, w_hh, hidden, n, gates = ctx.saved_tensors
        grad_h = grad_output.permute(2, 0, 1, 3).index_select(1, ctx.order).contiguous()  # time-major, one copy
        grads = _gru_backward(grad_h, inputs, w_ih, w_hh, hidden, n, gates, active=ctx.active, lengths=ctx.lengths,
                              input_grad=ctx.needs_input_grad[0], workspace=ctx.workspace, compiled=ctx.compiled)
        return *(None if grad is None else grad.index_select(0, ctx.restore) for grad in grads), None, None, None


def _collector_paused(function: Callable) -> Callable:
    """Run ``function`` with Python's cyclic garbage collector paused (and then restored as it was).

    The step loops create thousands of short-lived tensor views, all freed by reference counting;
    each of them also counts towards the collector's next pass over every object of the process,
    which in a process that has loaded torch, xarray and scipy took 5-10 % of the training time.
    """

    @functools.wraps(function)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


def _gru_forward(inputs, w_ih, w_hh_t, b_ih, b_hh, *, active: list[int], lengths: list[int], workspace: Workspace,
                 compiled: bool):
    """The training time loop, compiled (:mod:`~b2m_neuro.models.gru_kernel`) or in torch operations
    (:func:`_forward_steps`).

    ``w_hh_t`` is ``w_hh`` transposed, ``(R, H, 3H)``, contiguous (read once per step; that layout
    reads fastest). ``active[t]``: step t is computed for runs ``[:active[t]]`` only (runs sorted by
    decreasing length, ``lengths``). Returns the time-major ``hidden (T + 1, R, B, H)`` (``hidden[0]`` is the zero
    initial state) and, for the backward pass, ``n (T, R, B, H)`` and ``gates (T, R, B, 3H)``:
    ``r | z | W_hn h + b_hn`` (zeros where a run was not computed), all three in ``workspace``.
    """
    runs, size = w_hh_t.shape[0], w_hh_t.shape[1]
    batch, steps = inputs.shape[1], inputs.shape[2]
    hidden = workspace.empty("hidden", (steps + 1, runs, batch, size), w_hh_t)
    hidden[0].zero_()
    _zero_where_inactive(hidden[1:], active)
    gates = _zero_where_inactive(workspace.empty("gates", (steps, runs, batch, 3 * size), w_hh_t), active)
    n = _zero_where_inactive(workspace.empty("n", (steps, runs, batch, size), w_hh_t), active)
    if compiled:
        weight, bias = _input_weights(w_ih, b_ih, b_hh)
        gru_kernel.forward(inputs, weight.contiguous(), bias, w_hh_t, hidden, gates, n, lengths)
    else:
        _forward_steps(inputs, w_ih, w_hh_t, b_ih, b_hh, hidden, gates, n, active)
    return hidden, n, gates


@_collector_paused
def _forward_steps(inputs, w_ih, w_hh_t, b_ih, b_hh, hidden, gates, n, active: list[int]) -> None:
    """The training time loop in torch operations: each step is one batched matrix product and four
    element-wise operations, all written into the preallocated buffers of :func:`_gru_forward` (no
    allocation and no tensor indexing inside the loop)."""
    size = w_hh_t.shape[1]
    buffers = (gates, gates[..., : 2 * size], gates[..., 2 * size:], gates[..., :size], gates[..., size:2 * size], n)
    for block_start, offsets, input_n in _input_projections(inputs, w_ih, b_ih, b_hh):
        for start, stop, k in _segments(active, block_start, block_start + offsets.shape[1]):
            local = slice(start - block_start, stop - block_start)
            states = hidden[start:stop + 1, :k].unbind(0)
            views = [buffer[start:stop, :k].unbind(0) for buffer in buffers]
            weights = w_hh_t[:k]
            per_step = zip(offsets[:k, local].unbind(1), input_n[:k, local].unbind(1), states[:-1], states[1:], *views)
            for offset, input_n_t, h, h_next, *views_t in per_step:
                _cell(offset, input_n_t, h, h_next, weights, *views_t)


@_collector_paused
def _gru_readout(inputs, w_ih, w_hh_t, b_ih, b_hh, readout, *, keep_steps: list[int], rows: list[int]):
    """The evaluation time loop: R runs on shared ``inputs (1, B, T, I)``, the readout ``bias + h weight``
    (``readout = (weight (R, H, L), bias (R, 1, L))``) of their hidden states after the steps ``keep_steps``:
    ``(len(keep_steps), R, B, L)``.

    ``rows[t]``: step t is computed for the sequences ``[:rows[t]]`` only (sorted by decreasing length;
    the others' states are 0 from then on). One step's buffers are used again at every step, and each
    step's input terms are computed into them just before the recurrent product: for a batch of
    sequences the input terms of many steps (R x B x 4H numbers each) do not stay in cache, and
    writing and reading them back cost more than computing them a step at a time. The candidate
    state's ``tanh(a) = 2 sigmoid(2a) - 1``, with the weights that make ``a`` doubled (exact): on a CPU
    torch's tanh costs 3-4 times its sigmoid, and these batched steps are otherwise compute-bound.
    """
    runs, size = w_hh_t.shape[0], w_hh_t.shape[1]
    batch = inputs.shape[1]
    new = dict(dtype=w_hh_t.dtype, device=w_hh_t.device)
    weight, bias = _input_weights(w_ih, b_ih, b_hh)
    for doubled in (weight[..., 2 * size:], bias[..., 2 * size:]):  # b_hn | W_in x + b_in: twice the candidate's a
        doubled.mul_(2)
    w_hh_t = torch.cat([w_hh_t[..., : 2 * size], 2 * w_hh_t[..., 2 * size:]], 2)  # and twice W_hn h
    step_inputs = inputs[0].transpose(0, 1).contiguous()  # (T, B, I)
    kept_at = {step: slot for slot, step in enumerate(keep_steps)}
    kept = torch.zeros(len(keep_steps), runs, batch, readout[0].shape[2], **new)
    hidden = torch.zeros(2, runs, batch, size, **new)  # the state alternates between the two
    terms = torch.empty(runs, batch, 4 * size, **new)  # r | z | W_hn h + b_hn | W_in x + b_in
    for t in range(max(kept_at, default=-1) + 1):
        b = rows[t]
        h, h_next = hidden[t % 2, :, :b], hidden[(t + 1) % 2, :, :b]
        hidden[(t + 1) % 2, :, b:].zero_()
        step = terms[:, :b]
        torch.baddbmm(bias, step_inputs[t, :b].expand(runs, -1, -1), weight, out=step)
        step[..., : 3 * size].baddbmm_(h, w_hh_t)
        step[..., : 2 * size].sigmoid_()
        n = step[..., 3 * size:].addcmul_(step[..., :size], step[..., 2 * size:3 * size]).sigmoid_().mul_(2).sub_(1)
        torch.lerp(n, h, step[..., size:2 * size], out=h_next)
        if t in kept_at:
            torch.baddbmm(readout[1], hidden[(t + 1) % 2], readout[0], out=kept[kept_at[t]])
    return kept


def _cell(offset, input_n, h, h_next, w_hh_t, gates, gates_rz, gh_n, r, z, n) -> None:
    """One GRU step into preallocated outputs: ``gates = offset + h W_hh^T``, then its first 2H
    columns to ``r | z = sigmoid(.)`` in place, ``n = tanh(input_n + r * gh_n)``, ``h_next = n + z * (h - n)``
    (``gates_rz``, ``gh_n``, ``r``, ``z`` are column views of ``gates``)."""
    torch.baddbmm(offset, h, w_hh_t, out=gates)
    gates_rz.sigmoid_()
    torch.addcmul(input_n, r, gh_n, out=n).tanh_()
    torch.lerp(n, h, z, out=h_next)


def _zero_where_inactive(buffer, active: list[int]):
    """``buffer`` (time-major, runs on its second dimension) with ``buffer[t, active[t]:]`` set to 0 for
    every step t: the parts no run computes (in a group of runs whose sequences are 42-202 steps long,
    about 40 % of the buffer; zeroing the whole buffer cost 4 % of an epoch)."""
    changes = [0, *(np.flatnonzero(np.diff(active)) + 1).tolist(), len(active)]
    for start, stop in zip(changes[:-1], changes[1:]):
        if active[start] < buffer.shape[1]:
            buffer[start:stop, active[start]:].zero_()
    return buffer


def _segments(active: list[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """The steps ``start .. stop - 1`` as ``(first, last + 1, k)`` spans of one active-run count k > 0."""
    spans: list[tuple[int, int, int]] = []
    for t in range(start, stop):
        if spans and spans[-1][1] == t and spans[-1][2] == active[t]:
            spans[-1] = (spans[-1][0], t + 1, active[t])
        elif active[t]:
            spans.append((t, t + 1, active[t]))
    return spans


def _input_weights(w_ih, b_ih, b_hh):
    """The weight ``(R, I, 4H)`` and bias ``(R, 1, 4H)`` of a GRU step's input terms, by column
    ``W_ir x + b_ir + b_hr | W_iz x + b_iz + b_hz | b_hn | W_in x + b_in``: what the recurrent product
    ``h W_hh^T`` (first 3H columns) is added to, and the input part of the candidate state (last H)."""
    runs, size, width = w_ih.shape[0], w_ih.shape[1] // 3, w_ih.shape[2]
    weight = torch.cat([w_ih[:, : 2 * size], w_ih.new_zeros(runs, size, width), w_ih[:, 2 * size:]], 1)
    bias = torch.cat([b_ih[:, : 2 * size] + b_hh[:, : 2 * size], b_hh[:, 2 * size:], b_ih[:, 2 * size:]], 1)
    return weight.transpose(1, 2), bias.unsqueeze(1)


def _input_projections(inputs, w_ih, b_ih, b_hh):
    """The input terms of each step, in blocks of steps computed into one reused buffer.

    Yields ``(start, offsets, input_n)``, views valid until the next block: ``offsets (R, block, B, 3H)``
    is what the recurrent product is added to (``W_ir x + b_ir + b_hr``, ``W_iz x + b_iz + b_hz``,
    ``b_hn``) and ``input_n (R, block, B, H)`` is ``W_in x + b_in``; both come from one product with
    the columns ``(W_ir | W_iz | 0 | W_in)``. A buffer that stays in cache (and is not allocated
    again for every block) makes this many times faster than projecting a long batch at once.
    """
    runs, size = w_ih.shape[0], w_ih.shape[1] // 3
    batch, steps, width = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    weight, bias = _input_weights(w_ih, b_ih, b_hh)
    step_bytes = w_ih.element_size() * runs * batch * 4 * size
    block = max(1, min(steps, _PROJECTION_BLOCK_BYTES // step_bytes))
    buffer = torch.empty(runs * block * batch * 4 * size, dtype=w_ih.dtype, device=w_ih.device)
    for start in range(0, steps, block):
        x = inputs[:, :, start:start + block]  # (R or 1, B, block, I)
        stop = x.shape[2]
        flat = x.transpose(1, 2).expand(runs, -1, -1, -1).reshape(runs, stop * batch, width)
        projected = buffer[: runs * stop * batch * 4 * size].view(runs, stop * batch, 4 * size)
        torch.baddbmm(bias, flat, weight, out=projected)
        projected = projected.view(runs, stop, batch, 4 * size)
        yield start, projected[..., : 3 * size], projected[..., 3 * size:]


def _gru_backward(grad_h, inputs, w_ih, w_hh, hidden, n, gates, *, active: list[int], lengths: list[int],
                  input_grad: bool, workspace: Workspace, compiled: bool):
    """Backward through time carrying only ``dL/dh``; weight gradients by matrix products over all steps.

    ``grad_h (T, R, B, H)``: the gradient of the outputs, time-major and contiguous; it is completed
    in place to ``dL/dh_t``. ``w_hh (R, 3H, H)`` contiguous (the layout that reads fastest for
    ``dgh @ W_hh``); the step loop, compiled or in torch operations (:func:`_backward_steps`), writes
    into preallocated buffers only. ``lengths``: each run's steps, in decreasing order; ``active[t]``:
    the runs still going at step t.
    """
    size = w_hh.shape[2]
    r, z, gh_n = gates[..., :size], gates[..., size:2 * size], gates[..., 2 * size:]
    previous = hidden[:-1]
    # dL/dh_t times these factors gives the gradients of the gate pre-activations (all forward-only), by
    # gate: d(r pre-activation) | d(z pre-activation) | d(W_hn h + b_hn)
    # (a * (1 - b) is formed as a - a * b: no temporary tensor)
    to_n = workspace.empty("to_n", n.shape, n)  # (1 - z)(1 - n^2) -> d(W_in x + b_in + r * (W_hn h + b_hn))
    torch.mul(n, n, out=to_n).neg_().add_(1).addcmul_(to_n, z, value=-1)
    factors = workspace.empty("factors", gates.shape, gates)
    factor_r, factor_z, factor_n = factors[..., :size], factors[..., size:2 * size], factors[..., 2 * size:]
    torch.mul(to_n, r, out=factor_n)
    torch.mul(factor_n, gh_n, out=factor_r).addcmul_(factor_r, r, value=-1)
    torch.sub(previous, n, out=factor_z).mul_(z).addcmul_(factor_z, z, value=-1)
    _zero_where_inactive(grad_h, active)  # steps a run did not compute get no gradient
    grad_gh = _zero_where_inactive(workspace.empty("grad_gh", gates.shape, gates), active)
    if compiled:
        gru_kernel.backward(factors, gates, w_hh, grad_h, grad_gh, lengths)
    else:
        _backward_steps(factors, z, w_hh, grad_h, grad_gh, active)
    grad_w_hh = _recurrent_weight_gradient(grad_gh, previous, lengths)
    grad_b_hh = grad_gh.sum((0, 2))
    grad_gi = grad_gh  # from here on: its last H columns become d(W_in x + b_in)
    torch.mul(grad_h, to_n, out=grad_gi[..., 2 * size:])
    time_major_inputs = inputs.transpose(1, 2).transpose(0, 1)  # (T, R, B, I)
    grad_w_ih = torch.einsum("trbi,trbg->rgi", time_major_inputs, grad_gi)  # this order: 10x faster for few inputs
    grad_b_ih = grad_gi.sum((0, 2))
    grad_inputs = torch.einsum("trbg,rgi->rbti", grad_gi, w_ih) if input_grad else None
    return grad_inputs, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


@_collector_paused
def _backward_steps(factors, z, w_hh, grad_h, grad_gh, active: list[int]) -> None:
    """The backward time loop of :func:`_gru_backward` in torch operations: per step, from the last,
    ``dgh_t = factors_t * dh_t`` (per gate) into ``grad_gh``, and ``dh_(t-1) += dh_t * z_t + dgh_t @ W_hh`` in
    ``grad_h``."""
    by_gate = (*factors.shape[:3], 3, w_hh.shape[2])
    for start, stop, k in reversed(_segments(active, 0, factors.shape[0])):
        grad_h_at = grad_h[max(start - 1, 0):stop, :k].unbind(0)  # steps start - 1 (if any) .. stop - 1
        now, earlier = (grad_h_at, (None, *grad_h_at[:-1])) if start == 0 else (grad_h_at[1:], grad_h_at[:-1])
        per_step = zip(factors.view(by_gate)[start:stop, :k].unbind(0), grad_gh.view(by_gate)[start:stop, :k].unbind(0),
                       grad_gh[start:stop, :k].unbind(0), grad_h.unsqueeze(3)[start:stop, :k].unbind(0),
                       now, z[start:stop, :k].unbind(0), earlier)
        weights = w_hh[:k]
        for factor, grad_by_gate, grad_gates, grad_h_by_gate, grad_h_t, z_t, grad_h_before in reversed(list(per_step)):
            torch.mul(factor, grad_h_by_gate, out=grad_by_gate)
            if grad_h_before is not None:
                grad_h_before.addcmul_(grad_h_t, z_t).baddbmm_(grad_gates, weights)


def _recurrent_weight_gradient(grad_gh, previous, lengths: list[int]):
    """``dW_hh (R, 3H, H)``: per run, ``sum over its steps and sequences of dgh_t^T h_(t-1)``, from the
    time-major ``grad_gh (T, R, B, 3H)`` and ``previous (T, R, B, H)``, one matrix product per run over
    the ``lengths[r]`` steps it computed. One product over every run and the longest run's steps would
    also multiply the zeros past each shorter run's end: sampled in epochs of 16 runs, it took 6.1 %
    of the time, these products 4-5 %."""
    batch = grad_gh.shape[2]
    result = grad_gh.new_empty(grad_gh.shape[1], grad_gh.shape[3], previous.shape[3])
    for run, length in enumerate(lengths):
        torch.mm(grad_gh[:length, run].reshape(length * batch, -1).t(), previous[:length, run].reshape(length * batch, -1),
                 out=result[run])
    return result


# --- R reference GRUs as one group -------------------------------------------------------------


class StackedReferenceGRUs:
    """R reference GRUs (:class:`~b2m_neuro.models.gru.ReferenceGRU`, same shapes) with weights stacked
    along a leading run dimension; a group of the engine's model protocol (:mod:`b2m_neuro.engine`).

    Parameters
    ----------
    networks
        The R networks; :meth:`write_back` copies the trained weights into them.
    generators
        Per run, the ``torch.Generator`` its dropout masks are drawn from.
    device
        The ``torch.device`` the group trains on.
    backend
        ``"stacked"`` (:func:`stacked_gru`), ``"nn.GRU"`` (one ``nn.GRU`` call per run) or
        ``"auto"``: ``"nn.GRU"`` for a lone run on CUDA (where cuDNN fuses the whole sequence),
        else ``"stacked"``.
    """

    _NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "w_emb", "b_emb", "w_out", "b_out")

    def __init__(self, networks: Sequence[Any], *, generators: Sequence[torch.Generator], device: torch.device,
                 backend: str) -> None:
        self.networks = list(networks)
        self.device = device
        self.weights = {name: torch.stack([weight.detach() for weight in weights]).to(device).requires_grad_()
                        for name, weights in zip(self._NAMES, zip(*map(_weights, self.networks)))}
        self.dropout = [float(n.dropout.p) for n in self.networks]
        self.output_range = torch.tensor([float(n.output_range) for n in self.networks], device=device).view(-1, 1, 1)
        self.generators = list(generators)
        if backend == "auto":
            backend = "nn.GRU" if device.type == "cuda" and len(self.networks) == 1 else "stacked"
        self.backend = backend
        self.workspace = Workspace()  # the training passes' buffers, one batch after another
        if backend == "nn.GRU":
            gru = self.networks[0].gru
            self.template = torch.nn.GRU(gru.input_size, gru.hidden_size, batch_first=True).to(device)

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

    def predict(self, inputs: torch.Tensor, runs: Sequence[int], steps: Sequence[int],
                lengths: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation pass (dropout off) of ``runs`` on shared ``inputs (1, B, T, I)`` at ``steps``:
        outputs ``(R', B, len(steps))`` and aligned layer ``(R', B, len(steps), L)``.

        ``lengths`` (per sequence, optional): a sequence is computed up to its own length only; its
        outputs at later steps are those of a zero hidden state.
        """
        weights = {name: value.detach()[list(runs)] for name, value in self.weights.items()}
        with torch.no_grad():
            if self.backend == "stacked":
                lengths = np.full(inputs.shape[1], inputs.shape[2]) if lengths is None else np.asarray(lengths)
                order = np.argsort(-lengths, kind="stable")
                rows = (lengths[order][None, :] > np.arange(inputs.shape[2])[:, None]).sum(1).tolist()
                kept = _gru_readout(inputs[:, torch.as_tensor(order, device=inputs.device)], weights["w_ih"],
                                    weights["w_hh"].transpose(1, 2).contiguous(), weights["b_ih"], weights["b_hh"],
                                    (weights["w_emb"].transpose(1, 2), weights["b_emb"].unsqueeze(1)),
                                    keep_steps=list(steps), rows=rows)
                embedding = kept.permute(1, 2, 0, 3)[:, torch.as_tensor(np.argsort(order), device=inputs.device)]
            else:
                hidden = self._recurrent(inputs.expand(len(runs), -1, -1, -1), weights)[:, :, list(steps)]
                embedding = self._embedding(hidden, weights)
            return self._output(embedding, weights, self.output_range[list(runs)]), embedding

    def finite(self) -> np.ndarray:
        with torch.no_grad():
            flags = torch.stack([torch.isfinite(w.detach()).flatten(1).all(1) for w in self.weights.values()]).all(0)
        return flags.cpu().numpy()

    def write_back(self) -> None:
        """Copy each run's trained weights into its network."""
        with torch.no_grad():
            for index, network in enumerate(self.networks):
                for target, name in zip(_weights(network), self._NAMES):
                    target.copy_(self.weights[name][index])

    def _recurrent(self, inputs, weights, lengths=None):
        names = ("w_ih", "w_hh", "b_ih", "b_hh")
        if self.backend == "stacked":
            return stacked_gru(inputs, *(weights[name] for name in names), lengths=lengths, workspace=self.workspace)
        torch_names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        outputs = [torch.func.functional_call(self.template, {t: weights[n][r] for t, n in zip(torch_names, names)},
                                              (inputs[r],))[0] for r in range(inputs.shape[0])]
        return torch.stack(outputs)

    def _dropout_scale(self, shape, lengths: Sequence[int]):
        """Per run, ``1 / (1 - p)`` where a unit is kept (probability ``1 - p``) and 0 where it is dropped.

        A unit is kept where a uniform double from the run's generator is below ``1 - p``: the very masks
        that torch's CPU ``bernoulli_(1 - p)`` draws with its own kernel, in half the time, on every
        processor (on Intel's, ``bernoulli_`` uses MKL's generator instead and draws other masks).
        """
        runs, batch, steps, size = shape
        scale = torch.ones(shape, device=self.device)
        for r, (p, generator) in enumerate(zip(self.dropout, self.generators)):
            if p == 0:
                continue
            if p == 1:
                scale[r] = 0.0
                continue
            draws = torch.rand(batch, int(lengths[r]), size, dtype=torch.float64, generator=generator, device=self.device)
            scale[r, :, : int(lengths[r])] = (draws < 1 - p) / (1 - p)
        return scale

    def _head(self, hidden, weights):
        """Scaled-sigmoid output and embedding layer (the aligned one) of ``hidden (R, B, T, H)``."""
        embedding = self._embedding(hidden, weights)
        return self._output(embedding, weights, self.output_range), embedding

    @staticmethod
    def _embedding(hidden, weights):
        """The embedding layer of ``hidden (R, B, T, H)``: ``(R, B, T, L)``."""
        runs, batch, steps, size = hidden.shape
        flat = hidden.reshape(runs, batch * steps, size)
        embedding = torch.baddbmm(weights["b_emb"].unsqueeze(1), flat, weights["w_emb"].transpose(1, 2))
        return embedding.view(runs, batch, steps, -1)

    @staticmethod
    def _output(embedding, weights, output_range):
        """The scaled-sigmoid output of ``embedding (R, B, T, L)``: ``(R, B, T)``; ``output_range (R, 1, 1)``."""
        runs, batch, steps, latent = embedding.shape
        logit = torch.baddbmm(weights["b_out"].unsqueeze(1), embedding.reshape(runs, batch * steps, latent),
                              weights["w_out"].transpose(1, 2))
        return (output_range * (2.0 * torch.sigmoid(logit) - 1.0)).view(runs, batch, steps)


def _weights(network: Any) -> tuple[torch.Tensor, ...]:
    """A reference GRU's parameters in the order of :attr:`StackedReferenceGRUs._NAMES`."""
    gru, embedding, output = network.gru, network.embedding, network.output
    return (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0, embedding.weight, embedding.bias,
            output.weight, output.bias)
