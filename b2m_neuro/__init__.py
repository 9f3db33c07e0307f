"""b2m_neuro: human brain recordings as teachers for artificial networks (Brain2Model learning).

The public API is re-exported here. Heavy libraries (torch, cebra, mne, pynwb, dandi) load only
when a function that needs them is first used, so ``import b2m_neuro`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from b2m_neuro._version import __version__
from b2m_neuro.errors import (
    AdapterError,
    B2MError,
    ConversionError,
    DerivativeError,
    EmbeddingError,
    SimulationError,
    SourceError,
    SweepError,
    TrainingError,
)

# public name -> module that defines it; loaded on first access. Modules are not named like the
# functions they hold (``embedding`` holds ``embed``, ``training`` holds ``train``): importing a
# submodule sets it as an attribute of this package, which would hide a function of the same name.
_LAZY = {
    "SpikeRecording": "b2m_neuro.recording",
    "memory_session": "b2m_neuro.simulate",
    "driving_session": "b2m_neuro.simulate",
    "spikes_to_nwb": "b2m_neuro.convert",
    "waveclus_to_nwb": "b2m_neuro.convert",
    "eeg_to_bids": "b2m_neuro.convert",
    "fetch": "b2m_neuro.sources",
    "TeacherSpec": "b2m_neuro.adapters",
    "load_spikes": "b2m_neuro.adapters",
    "load_eeg": "b2m_neuro.adapters",
    "embed": "b2m_neuro.embedding",
    "Derivative": "b2m_neuro.derivative",
    "train": "b2m_neuro.training",
    "TrainResult": "b2m_neuro.train_result",
    "sweep": "b2m_neuro.sweeps",
    "SweepResult": "b2m_neuro.sweeps",
}

__all__ = [
    "__version__",
    "B2MError",
    "SimulationError",
    "ConversionError",
    "SourceError",
    "AdapterError",
    "EmbeddingError",
    "DerivativeError",
    "TrainingError",
    "SweepError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'b2m_neuro' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
