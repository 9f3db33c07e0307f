"""NWB / BIDS recordings -> labelled xarray arrays, driven by declarative teacher specs."""

from b2m_neuro.adapters.eeg import EEGSpec, load_eeg
from b2m_neuro.adapters.spec import (
    CodeMap,
    ColumnExpression,
    ColumnSum,
    FilterSpec,
    FixedWindow,
    ReactionTimeWindow,
    TeacherSpec,
    TrialBlocks,
    TrialSelection,
    UnitSelection,
    list_presets,
)
from b2m_neuro.adapters.spikes import load_spikes

__all__ = [
    "TeacherSpec",
    "FixedWindow",
    "ReactionTimeWindow",
    "FilterSpec",
    "UnitSelection",
    "TrialSelection",
    "CodeMap",
    "ColumnSum",
    "ColumnExpression",
    "TrialBlocks",
    "list_presets",
    "load_spikes",
    "load_eeg",
    "EEGSpec",
]
