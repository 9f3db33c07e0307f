"""NWB / BIDS recordings -> labelled xarray arrays, driven by declarative teacher specs."""

from b2m_neuro.adapters.eeg import EEGSpec, load_eeg
from b2m_neuro.adapters.spec import FilterSpec, FixedWindow, ReactionTimeWindow, TeacherSpec, UnitSelection, list_presets
from b2m_neuro.adapters.spikes import load_spikes

__all__ = [
    "TeacherSpec",
    "FixedWindow",
    "ReactionTimeWindow",
    "FilterSpec",
    "UnitSelection",
    "list_presets",
    "load_spikes",
    "load_eeg",
    "EEGSpec",
]
