"""The stacked GRU's time loops as compiled code, for tensors on a CPU: :func:`load`, :func:`forward`, :func:`backward`.

On a CPU, one step of 16 runs at hidden 128 and batch 1 is about 50 k multiply-adds per run; written as
torch operations (a batched product and four element-wise operations, each on new tensor views), the
per-operation dispatch cost about as much as the arithmetic. ``_gru_kernel.cpp`` runs the same loops
(same equations, buffers and layouts as :mod:`b2m_neuro.models.stacked_gru`'s torch loops) in one call.

It is built from source once per process, on first use, with the system's C++ compiler (``$CXX``,
else ``c++``) for the processor at hand, in a temporary folder, and loaded with :mod:`ctypes`
(about 1 s). Where no compiler works, :func:`load` returns ``None`` (a warning from this module's logger
says why, once) and :func:`~b2m_neuro.models.stacked_gru.stacked_gru` uses its torch loops.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["compiler", "load", "supports", "forward", "backward"]

_SOURCE = Path(__file__).with_name("_gru_kernel.cpp")
_SUFFIX = {torch.float32: "float", torch.float64: "double"}
_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-shared", "-fPIC")  # for this processor; errno is never read
_log = logging.getLogger(__name__)


def compiler() -> list[str]:
    """The command that builds the loops: ``$CXX`` (split as a shell would), else ``c++``."""
    return shlex.split(os.environ.get("CXX") or "c++")


@functools.cache
def load() -> ctypes.CDLL | None:
    """The compiled loops (built on the first call of the process), or ``None`` where no compiler works."""
    with tempfile.TemporaryDirectory(prefix="b2m-gru-kernel-") as folder:
        library = Path(folder) / "gru_kernel.so"
        command = [*compiler(), *_FLAGS, str(_SOURCE), "-o", str(library)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
            return _declare(ctypes.CDLL(str(library)))  # loaded: the file may go
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", None) or error
            _log.warning("the compiled GRU loops are not available (%s: %s); the stacked GRU runs its torch loops",
                         " ".join(command), detail)
            return None


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    pointer, index = ctypes.c_void_p, ctypes.c_int64
    for suffix in _SUFFIX.values():
        getattr(library, f"gru_forward_{suffix}").argtypes = [index] * 5 + [pointer] * 8
        getattr(library, f"gru_backward_{suffix}").argtypes = [index] * 3 + [pointer] * 6
        for name in (f"gru_forward_{suffix}", f"gru_backward_{suffix}"):
            getattr(library, name).restype = None
    return library


def supports(tensor: torch.Tensor) -> bool:
    """Whether the compiled loops can take ``tensor``'s device and dtype (and were built)."""
    return tensor.device.type == "cpu" and tensor.dtype in _SUFFIX and load() is not None


def forward(inputs, w_input, bias, w_hidden_t, hidden, gates, candidate, lengths: Sequence[int]) -> None:
    """The training forward loop: ``inputs (R, B, T, I)``, ``w_input (R, I, 4H)``, ``bias (R, 1, 4H)`` (the
    input terms' weight and bias, as :func:`~b2m_neuro.models.stacked_gru._input_weights` gives them),
    ``w_hidden_t (R, H, 3H)``; writes run r's first ``lengths[r]`` steps into ``hidden (T + 1, R, B, H)``
    (from step 1), ``gates (T, R, B, 3H)`` and ``candidate (T, R, B, H)``."""
    runs, batch, steps, width = inputs.shape
    size = w_hidden_t.shape[1]
    tensors = _checked(inputs=(inputs, (runs, batch, steps, width)), w_input=(w_input, (runs, width, 4 * size)),
                       bias=(bias, (runs, 1, 4 * size)), w_hidden_t=(w_hidden_t, (runs, size, 3 * size)),
                       hidden=(hidden, (steps + 1, runs, batch, size)), gates=(gates, (steps, runs, batch, 3 * size)),
                       candidate=(candidate, (steps, runs, batch, size)))
    counts = _lengths(lengths, runs, steps)
    _function("gru_forward", inputs)(steps, runs, batch, size, width, counts.ctypes.data,
                                     *(tensor.data_ptr() for tensor in tensors))


def backward(factors, gates, w_hidden, grad_h, grad_gh, lengths: Sequence[int]) -> None:
    """The backward loop: from ``factors (T, R, B, 3H)``, ``gates`` (as the forward wrote them) and
    ``w_hidden (R, 3H, H)``, completes ``grad_h (T, R, B, H)`` in place to ``dL/dh_t`` and writes the gate
    gradients into ``grad_gh (T, R, B, 3H)``, for run r's first ``lengths[r]`` steps."""
    steps, runs, batch, size = grad_h.shape
    by_gate = (steps, runs, batch, 3 * size)
    tensors = _checked(factors=(factors, by_gate), gates=(gates, by_gate), w_hidden=(w_hidden, (runs, 3 * size, size)),
                       grad_h=(grad_h, (steps, runs, batch, size)), grad_gh=(grad_gh, by_gate))
    counts = _lengths(lengths, runs, steps)
    _function("gru_backward", grad_h)(runs, batch, size, counts.ctypes.data, *(tensor.data_ptr() for tensor in tensors))


def _function(name: str, like: torch.Tensor):
    return getattr(load(), f"{name}_{_SUFFIX[like.dtype]}")


def _lengths(lengths: Sequence[int], runs: int, steps: int) -> np.ndarray:
    """The steps per run as the loops take them, checked against the buffers (the loops index raw memory)."""
    counts = np.ascontiguousarray(lengths, dtype=np.int64)
    if counts.shape != (runs,) or counts.min(initial=0) < 0 or counts.max(initial=0) > steps:
        raise ValueError(f"the compiled GRU loops need one length in [0, {steps}] per run ({runs}), got {lengths}")
    return counts


def _checked(**named: tuple[torch.Tensor, tuple[int, ...]]) -> list[torch.Tensor]:
    """The tensors, each checked against its expected shape: contiguous, on the CPU, all of one dtype (the
    loops index raw memory)."""
    dtype = next(iter(named.values()))[0].dtype
    for name, (tensor, shape) in named.items():
        if tensor.device.type != "cpu" or tensor.dtype != dtype or not tensor.is_contiguous() or tensor.shape != shape:
            raise ValueError(f"the compiled GRU loops take {name} as a contiguous CPU {dtype} tensor of shape {shape}, "
                             f"got {tuple(tensor.shape)} {tensor.dtype} on {tensor.device} "
                             f"(contiguous: {tensor.is_contiguous()})")
    return [tensor for tensor, _ in named.values()]
