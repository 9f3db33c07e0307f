"""WaveClus spike-sorting output + an events table -> :class:`SpikeRecording` -> NWB.

WaveClus (Chaure, Rey & Quian Quiroga 2018) writes one ``times_<channel>.mat`` per channel. Its
variable ``cluster_class`` is an N x 2 double matrix: column 0 the cluster of each detected spike
(0 = not assigned to any cluster), column 1 the spike time in ms. The same file holds ``spikes``
(N x 64 waveforms), ``par`` (a struct whose ``sr`` is the sampling rate in Hz), ``inspk``,
``forced``, ``Temp``, ``gui_status`` and sometimes ``ipermut``. WaveClus saves it as a MATLAB v5
(v7) file, or as a v7.3 (HDF5) file when the variables are too large; both are read here.

Every cluster > 0 of every channel becomes one unit named ``<channel>_cluster<k>``; each channel
is one electrode, located in the brain area that ``channel_areas`` gives it.

The events table (TSV or CSV, one row per trial; times in seconds on the recording's clock) needs

- ``stimulus_onset``: when the stimulus appeared;
- ``response_time``: when the participant responded (or give ``stop_time`` directly);

and may carry ``start_time`` (default: ``stimulus_onset - pre_onset``), the memory-task columns of
:data:`b2m_neuro.recording.MEMORY_TRIAL_COLUMNS` (``stimulus``, ``first_target``,
``second_target``, ``current_target``, ``correct_response``, ``response``, ``correct``,
``reaction_time``, ``episode``) and any other per-trial column; all are kept. ``reaction_time``
(= ``response_time - stimulus_onset``) and ``correct`` (= ``response == correct_response``) are
computed when missing.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from b2m_neuro._util.files import check_writable_target
from b2m_neuro._util.progress import track
from b2m_neuro.convert.deidentify import DEFAULT_DATE_SHIFT_DAYS
from b2m_neuro.convert.spikes import spikes_to_nwb
from b2m_neuro.errors import ConversionError
from b2m_neuro.recording import MEMORY_TRIAL_COLUMNS, SpikeRecording

__all__ = ["read_waveclus", "waveclus_to_nwb", "read_times_file", "read_events", "read_channel_areas"]

PathLike = str | os.PathLike
_TIMES_NAME = re.compile(r"^times_(.+)\.mat$")


def waveclus_to_nwb(
    source: PathLike | Sequence[PathLike],
    events: PathLike | pd.DataFrame,
    path: PathLike,
    *,
    channel_areas: Mapping[Any, str] | PathLike,
    subject: dict[str, Any],
    session_id: str,
    session_start_time: dt.datetime,
    session_description: str = "spike-sorted intracranial recording (WaveClus)",
    sampling_rate: float | None = None,
    pre_onset: float = 1.0,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    deidentify: bool = True,
    date_shift_days: int = DEFAULT_DATE_SHIFT_DAYS,
    progress: bool = True,
) -> Path:
    """Convert WaveClus ``times_<channel>.mat`` files and an events table to one NWB file.

    Reads with :func:`read_waveclus` and writes with :func:`~b2m_neuro.convert.spikes_to_nwb`;
    see those for the parameters. Nothing is written if any input is wrong.

    Examples
    --------
    >>> waveclus_to_nwb("sorting/", "events.tsv", "sub-P01_ses-1_ecephys.nwb",  # doctest: +SKIP
    ...                 channel_areas="channels.tsv", subject={"subject_id": "P01", "age": 34,
    ...                 "sex": "F", "species": "Homo sapiens"}, session_id="1",
    ...                 session_start_time=datetime(2021, 3, 4, 10, 0, tzinfo=timezone.utc))
    """
    check_writable_target(path, overwrite=overwrite, error=ConversionError)
    recording = read_waveclus(
        source, events, channel_areas=channel_areas, subject=subject, session_id=session_id,
        session_start_time=session_start_time, session_description=session_description,
        sampling_rate=sampling_rate, pre_onset=pre_onset, metadata=metadata, progress=progress,
    )
    return spikes_to_nwb(recording, path, overwrite=overwrite, deidentify=deidentify, date_shift_days=date_shift_days)


def read_waveclus(
    source: PathLike | Sequence[PathLike],
    events: PathLike | pd.DataFrame,
    *,
    channel_areas: Mapping[Any, str] | PathLike,
    subject: dict[str, Any],
    session_id: str,
    session_start_time: dt.datetime,
    session_description: str = "spike-sorted intracranial recording (WaveClus)",
    sampling_rate: float | None = None,
    pre_onset: float = 1.0,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
) -> SpikeRecording:
    """Read WaveClus output and an events table into a :class:`SpikeRecording`.

    Parameters
    ----------
    source
        A folder holding ``times_<channel>.mat`` files, one such file, or a list of them.
    events
        The events table (``.tsv`` or ``.csv`` path, or a DataFrame); columns as in the module
        docstring.
    channel_areas
        Brain area per channel name (the ``<channel>`` of ``times_<channel>.mat``): a dict, or a
        TSV file with columns ``channel`` and ``brain_area``.
    subject, session_id, session_start_time, session_description, metadata
        As in :class:`SpikeRecording`.
    sampling_rate
        Acquisition rate (Hz); by default ``par.sr`` from the WaveClus files.
    pre_onset
        Seconds before ``stimulus_onset`` at which a trial starts, when ``start_time`` is not given.
    progress
        Show a progress bar while reading the channels.

    Returns
    -------
    SpikeRecording
    """
    files = _times_files(source)
    areas = read_channel_areas(channel_areas)
    spike_times, unit_ids, brain_area, electrode, locations, rates = [], [], [], [], [], set()
    channels = track(files.items(), description="reading WaveClus files", total=len(files), progress=progress)
    for channel, file in channels:
        area = areas.get(channel)
        if area is None:
            raise ConversionError(
                f"channel {channel!r} (from {file.name}) has no brain area",
                file=None if isinstance(channel_areas, Mapping) else channel_areas,
                field="channel_areas", fix=f"add {channel!r} with its brain area to channel_areas",
            )
        cluster_class, rate = read_times_file(file)
        if rate is not None:
            rates.add(rate)
        for cluster in np.unique(cluster_class[:, 0]):
            if cluster > 0:
                spike_times.append(cluster_class[cluster_class[:, 0] == cluster, 1] / 1000.0)
                unit_ids.append(f"{channel}_cluster{int(cluster)}")
                brain_area.append(area)
                electrode.append(len(locations))
        locations.append(area)
    return SpikeRecording(
        spike_times=spike_times,
        unit_ids=unit_ids,
        brain_area=brain_area,
        electrode=electrode,
        electrode_location=locations,
        trials=read_events(events, pre_onset=pre_onset),
        subject=dict(subject),
        session_id=session_id,
        session_start_time=session_start_time,
        session_description=session_description,
        sampling_rate=_sampling_rate(sampling_rate, rates, source),
        metadata=dict(metadata or {}),
    )


# --------------------------------------------------------------------------------------------
# WaveClus files


def _times_files(source: PathLike | Sequence[PathLike]) -> dict[str, Path]:
    if isinstance(source, str | os.PathLike) and Path(source).is_dir():
        paths = sorted(Path(source).glob("times_*.mat"))
        if not paths:
            raise ConversionError("the folder holds no WaveClus times_<channel>.mat files", file=source,
                                  field="source", fix="point to the folder where WaveClus wrote its times_*.mat files")
    else:
        paths = [Path(source)] if isinstance(source, str | os.PathLike) else [Path(p) for p in source]
    files = {}
    for path in paths:
        match = _TIMES_NAME.match(path.name)
        if match is None or not path.is_file():
            raise ConversionError(
                "not an existing WaveClus times_<channel>.mat file", file=path, field="source",
                fix="give a folder of times_<channel>.mat files or a list of such files",
            )
        files[match.group(1)] = path
    return dict(sorted(files.items(), key=lambda item: _natural_key(item[0])))


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def read_times_file(path: PathLike) -> tuple[np.ndarray, float | None]:
    """Return ``cluster_class`` (N x 2: cluster id, spike time in ms) and ``par.sr`` (or None).

    Reads MATLAB v5/v7 files with :func:`scipy.io.loadmat` and v7.3 (HDF5) files with h5py.
    """
    import h5py

    path = Path(path)
    try:
        cluster_class, rate = _read_v73(path) if h5py.is_hdf5(path) else _read_v5(path)
    except Exception as error:  # any reader failure on a user's file (truncated, corrupt) is a bad input
        raise ConversionError(
            f"cannot read this MATLAB file ({type(error).__name__}: {error})", file=path, field="source",
            fix="if it is truncated or corrupt, copy it again from the sorting output; "
            "give the times_<channel>.mat files exactly as WaveClus wrote them",
        ) from None
    return _check_cluster_class(cluster_class, path), rate


def _read_v5(path: Path) -> tuple[np.ndarray | None, float | None]:
    import scipy.io

    contents = scipy.io.loadmat(path, variable_names=["cluster_class", "par"], simplify_cells=True)
    par = contents.get("par")
    rate = par.get("sr") if isinstance(par, dict) else None
    return contents.get("cluster_class"), _scalar(rate)


def _read_v73(path: Path) -> tuple[np.ndarray | None, float | None]:
    import h5py

    with h5py.File(path, "r") as handle:
        cluster_class = None
        if isinstance(handle.get("cluster_class"), h5py.Dataset):
            dataset = handle["cluster_class"]
            # MATLAB writes arrays column-major (N x 2 is stored 2 x N) and empty arrays as their shape.
            cluster_class = np.zeros((0, 2)) if dataset.attrs.get("MATLAB_empty", 0) else np.asarray(dataset[()]).T
        rate = handle.get("par/sr")
        if not isinstance(rate, h5py.Dataset) or rate.attrs.get("MATLAB_empty", 0):
            rate = None
        else:
            rate = np.asarray(rate[()])
    return cluster_class, _scalar(rate)


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=float).ravel()
    return float(array[0]) if array.size == 1 and np.isfinite(array[0]) and array[0] > 0 else None


def _check_cluster_class(cluster_class: Any, path: Path) -> np.ndarray:
    if cluster_class is None:
        raise ConversionError(
            "the file has no cluster_class variable", file=path, field="cluster_class",
            fix="run WaveClus clustering (Do_clustering) on this channel; only its times_*.mat results can be read",
        )
    array = np.asarray(cluster_class, dtype=float)
    if array.ndim == 1 and array.size == 2:
        array = array.reshape(1, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ConversionError(f"cluster_class has shape {array.shape}, not N x 2", file=path, field="cluster_class",
                              fix="give WaveClus output: one row per spike (cluster id, time in ms)")
    clusters = array[:, 0]
    if not np.all(np.isfinite(array)) or np.any(clusters < 0) or np.any(clusters != np.round(clusters)):
        raise ConversionError("cluster_class holds non-finite times or cluster ids that are not whole numbers >= 0",
                              file=path, field="cluster_class", fix="give the file exactly as WaveClus wrote it")
    return array


def _sampling_rate(given: float | None, found: set[float], source: Any) -> float:
    if given is not None:
        return float(given)
    if len(found) == 1:
        return found.pop()
    problem = "the WaveClus files give no sampling rate (par.sr)" if not found else (
        f"the WaveClus files disagree on the sampling rate (par.sr: {sorted(found)})")
    raise ConversionError(problem, file=source if isinstance(source, str | os.PathLike) else None,
                          field="sampling_rate", fix="pass sampling_rate (Hz) explicitly")


# --------------------------------------------------------------------------------------------
# channel areas and events


def read_channel_areas(channel_areas: Mapping[Any, str] | PathLike) -> dict[str, str]:
    """Return ``{channel name: brain area}`` from a dict or a TSV with ``channel`` and ``brain_area``."""
    if isinstance(channel_areas, Mapping):
        return {str(channel): area for channel, area in channel_areas.items()}
    table = _read_table(channel_areas, what="channel areas")
    missing = [column for column in ("channel", "brain_area") if column not in table.columns]
    if missing:
        raise ConversionError(f"the channel table lacks the columns {missing}", file=channel_areas,
                              field=", ".join(missing), fix="give a TSV with columns channel and brain_area")
    return {str(channel): area for channel, area in zip(table["channel"], table["brain_area"], strict=True)}


def read_events(events: PathLike | pd.DataFrame, *, pre_onset: float = 1.0) -> pd.DataFrame:
    """Return the NWB trials table (start_time, stop_time, task columns) built from an events table."""
    source = None if isinstance(events, pd.DataFrame) else events
    table = events.copy() if isinstance(events, pd.DataFrame) else _read_table(events, what="events")
    if "stimulus_onset" not in table.columns or not {"response_time", "stop_time"} & set(table.columns):
        raise ConversionError(
            f"the events table has columns {list(table.columns)} but needs stimulus_onset and response_time",
            file=source, field="stimulus_onset, response_time",
            fix="name the onset column stimulus_onset and the response column response_time (seconds)",
        )
    for column in ("stimulus_onset", "response_time", "start_time", "stop_time"):
        if column in table.columns:
            values = pd.to_numeric(table[column], errors="coerce")
            if values.isna().any():
                row = int(np.flatnonzero(values.isna().to_numpy())[0])
                raise ConversionError(f"events row {row} has a missing or non-numeric {column}", file=source,
                                      field=f"{column}[{row}]", fix=f"give every trial a {column} in seconds")
            table[column] = values.astype(float)
    if "start_time" not in table.columns:
        table["start_time"] = table["stimulus_onset"] - pre_onset
    if "stop_time" not in table.columns:
        table["stop_time"] = table["response_time"]
    if "reaction_time" not in table.columns and "response_time" in table.columns:
        table["reaction_time"] = table["response_time"] - table["stimulus_onset"]
    if "correct" not in table.columns and {"response", "correct_response"} <= set(table.columns):
        table["correct"] = table["response"] == table["correct_response"]
    table = table.drop(columns=["response_time"], errors="ignore")
    known = [column for column in MEMORY_TRIAL_COLUMNS if column in table.columns]
    return table[known + [column for column in table.columns if column not in known]].reset_index(drop=True)


def _read_table(path: PathLike, *, what: str) -> pd.DataFrame:
    path = Path(path)
    separator = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        return pd.read_csv(path, sep=separator)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise ConversionError(f"cannot read the {what} table ({error})", file=path, field=what,
                              fix="give a tab-separated .tsv or comma-separated .csv file with a header row") from None
