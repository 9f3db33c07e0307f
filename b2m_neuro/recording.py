"""The in-memory form of a spike-sorted lab session, before it becomes an NWB file.

``simulate.memory_session`` produces one, ``convert.waveclus_to_nwb`` reads one from WaveClus
output, and ``convert.spikes_to_nwb`` writes one to NWB. Plain numpy and pandas only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Trial-table columns of the memory goal-switching task, as written to NWB ``trials``.
MEMORY_TRIAL_COLUMNS = {
    "start_time": "trial start (s): 1 s before stimulus onset",
    "stop_time": "trial stop (s): the participant's response",
    "stimulus_onset": "time the stimulus appeared on screen (s)",
    "stimulus": "index of the stimulus shown (0, 1, 2)",
    "first_target": "target candidate cued first at the episode start",
    "second_target": "target candidate cued second at the episode start",
    "current_target": "the target in force at this step (the hidden goal)",
    "correct_response": "1 if the stimulus is the current target (accept), else 0 (reject)",
    "response": "the participant's response: 1 accept, 0 reject",
    "correct": "whether the response was correct",
    "reaction_time": "time from stimulus onset to response (s)",
    "episode": "episode index within the session",
}


@dataclass
class SpikeRecording:
    """A spike-sorted session: units, electrodes, trials, subject and session metadata.

    Attributes
    ----------
    spike_times
        One sorted float64 array of spike times (s, session clock) per unit.
    unit_ids
        One identifier per unit.
    brain_area
        One region name per unit (e.g. ``"hippocampus"``).
    electrode
        Per unit, the index of its electrode in ``electrode_location``.
    electrode_location
        Per electrode, its anatomical location.
    trials
        One row per trial; columns as in ``MEMORY_TRIAL_COLUMNS`` for the memory task, at least
        ``start_time`` and ``stop_time`` for any task.
    subject
        NWB ``Subject`` fields: ``subject_id``, ``species``, ``sex``, ``age`` (ISO 8601 duration
        such as ``"P34Y"``), optionally ``date_of_birth`` and ``description``.
    session_id, session_start_time, session_description
        NWB file metadata; ``session_start_time`` must be timezone-aware.
    sampling_rate
        Acquisition rate (Hz); spike times are exact to ``1 / sampling_rate``.
    metadata
        Anything else worth keeping: ``institution``, ``lab``, ``experimenter``, ``keywords``,
        ``device``, ``ground_truth`` (simulations only).
    """

    spike_times: list[np.ndarray]
    unit_ids: list[str]
    brain_area: list[str]
    electrode: list[int]
    electrode_location: list[str]
    trials: pd.DataFrame
    subject: dict[str, Any]
    session_id: str
    session_start_time: dt.datetime
    session_description: str = "spike-sorted intracranial recording"
    sampling_rate: float = 30_000.0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return len(self.spike_times)
