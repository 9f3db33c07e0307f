"""Lab recordings -> NWB (spikes) and BIDS (EEG), de-identified by default."""

from b2m_neuro.convert.dandiset import dandi_path, write_dandiset
from b2m_neuro.convert.eeg import eeg_to_bids
from b2m_neuro.convert.spikes import spikes_to_nwb
from b2m_neuro.convert.waveclus import read_waveclus, waveclus_to_nwb

__all__ = ["eeg_to_bids", "spikes_to_nwb", "waveclus_to_nwb", "read_waveclus", "write_dandiset", "dandi_path"]
