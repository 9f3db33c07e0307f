"""A spike-sorted session (:class:`~b2m_neuro.recording.SpikeRecording`) -> one NWB file.

Layout written by :func:`spikes_to_nwb`:

- ``units``: ``spike_times`` (s), ``unit_name`` (the recording's unit ids), ``brain_area``,
  ``electrodes`` (a region of the electrodes table), ``resolution`` = 1 / sampling rate;
- ``electrodes``: one row per electrode with its ``location`` and ``group`` (one electrode group
  per location, all on one device);
- ``trials``: every column of ``recording.trials``, described by ``MEMORY_TRIAL_COLUMNS`` where
  the name is known;
- ``subject``, ``keywords``, ``session_id``, ``experimenter``, ``institution``, ``lab``, a unique
  ``identifier``; ``notes`` holds ``metadata["notes"]`` and the de-identification note (see
  :mod:`b2m_neuro.convert.deidentify`).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from b2m_neuro._util.files import atomic_path, check_writable_target
from b2m_neuro.convert.deidentify import (
    DEFAULT_DATE_SHIFT_DAYS,
    check_shift,
    deidentification_note,
    deidentify_subject,
    iso_age,
    shift_date,
)
from b2m_neuro.errors import ConversionError
from b2m_neuro.recording import MEMORY_TRIAL_COLUMNS, SpikeRecording

__all__ = ["spikes_to_nwb", "check_recording", "SUBJECT_FIELDS", "DEFAULT_KEYWORDS"]

# Keys accepted in ``SpikeRecording.subject``: the NWB Subject fields plus ``name``.
SUBJECT_FIELDS = (
    "subject_id", "species", "sex", "age", "date_of_birth", "description", "genotype", "strain", "weight", "name",
)
NWB_SEXES = ("M", "F", "U", "O")
DEFAULT_KEYWORDS = ("single units", "spike sorting", "intracranial recording", "trials")
DEFAULT_DEVICE = {"name": "microwires", "description": "microwire electrodes for single-unit recording"}


def spikes_to_nwb(
    recording: SpikeRecording,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    deidentify: bool = True,
    date_shift_days: int = DEFAULT_DATE_SHIFT_DAYS,
) -> Path:
    """Write a spike-sorted session to an NWB file, de-identified by default.

    Parameters
    ----------
    recording
        The session: spike times per unit, unit ids, brain area and electrode per unit, electrode
        locations, trials table, subject and session metadata.
    path
        The ``.nwb`` file to write; its folder must exist. Written atomically: a failure leaves
        no file behind.
    overwrite
        Replace an existing file at ``path``.
    deidentify
        Drop the subject's name and date of birth, write the age as an ISO 8601 duration and shift
        the session date by ``date_shift_days``, recorded in the file's ``notes``. ``False``
        writes the subject and date as given.
    date_shift_days
        Whole days added to ``session_start_time`` when de-identifying (negative: earlier).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConversionError
        For any inconsistent input (named by unit, row or field), a missing output folder or an
        existing file without ``overwrite=True``; nothing is written then.

    Examples
    --------
    >>> from b2m_neuro.simulate import memory_session  # doctest: +SKIP
    >>> spikes_to_nwb(memory_session(seed=1), "sub-01_ses-01_ecephys.nwb")  # doctest: +SKIP
    PosixPath('sub-01_ses-01_ecephys.nwb')
    """
    path = check_writable_target(path, overwrite=overwrite, error=ConversionError)
    check_recording(recording, file=path)
    shift = check_shift(date_shift_days) if deidentify else 0
    try:
        nwbfile = _build_nwbfile(recording, deidentify=deidentify, shift=shift, file=str(path))
    except (TypeError, ValueError) as error:  # the data are checked above; what is left is metadata
        raise ConversionError(
            f"pynwb rejected the session metadata ({error})", file=path, field="metadata",
            fix="give metadata as documented in SpikeRecording (device: a name or a dict of NWB Device fields)",
        ) from None

    from pynwb import NWBHDF5IO

    with atomic_path(path) as tmp, warnings.catch_warnings():
        # pynwb warns that the temporary name ends in ".partial", not ".nwb"; the final name is the caller's.
        warnings.filterwarnings("ignore", message="The file path provided", category=UserWarning)
        with NWBHDF5IO(tmp, "w") as io:
            io.write(nwbfile)
    return path


# --------------------------------------------------------------------------------------------
# checks: every user mistake becomes a ConversionError naming the unit, row or field


def check_recording(recording: SpikeRecording, *, file: str | os.PathLike | None = None) -> None:
    """Raise :class:`ConversionError` if ``recording`` cannot be written as a consistent NWB file."""
    file = None if file is None else str(file)
    _check_lengths(recording, file)
    n_electrodes = len(recording.electrode_location)
    for index, location in enumerate(recording.electrode_location):
        if not isinstance(location, str) or not location.strip():
            raise ConversionError(
                f"electrode {index} has no location", file=file, field=f"electrode_location[{index}]",
                fix="give every electrode its anatomical location",
            )
    seen: set[str] = set()
    for index, unit in enumerate(recording.unit_ids):
        name = f"unit {unit!r} (index {index})"
        if str(unit) in seen:
            raise ConversionError(f"{name} appears twice", file=file, field="unit_ids",
                                  fix="give every unit its own id")
        seen.add(str(unit))
        _check_spike_train(recording.spike_times[index], name, index, file)
        area = recording.brain_area[index]
        if not isinstance(area, str) or not area.strip():
            raise ConversionError(
                f"{name} has no brain region", file=file, field=f"brain_area[{index}]",
                fix="give every unit the brain area of its electrode (e.g. 'hippocampus')",
            )
        electrode = recording.electrode[index]
        is_index = isinstance(electrode, int | np.integer) and not isinstance(electrode, bool)
        if not is_index or not 0 <= electrode < n_electrodes:
            raise ConversionError(
                f"{name} is on electrode {electrode!r}, but there are {n_electrodes} electrodes",
                file=file, field=f"electrode[{index}]",
                fix=f"use an index from 0 to {n_electrodes - 1} into electrode_location",
            )
    _check_trials(recording.trials, file)
    _check_session(recording, file)


def _check_lengths(recording: SpikeRecording, file: str | None) -> None:
    lengths = {
        "spike_times": len(recording.spike_times),
        "unit_ids": len(recording.unit_ids),
        "brain_area": len(recording.brain_area),
        "electrode": len(recording.electrode),
    }
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ConversionError(
            f"the per-unit columns have different lengths ({listed})", file=file, field="units",
            fix="give one entry per unit in spike_times, unit_ids, brain_area and electrode",
        )
    if lengths["spike_times"] == 0:
        raise ConversionError("the recording has no units", file=file, field="spike_times", fix="add at least one unit")


def _check_spike_train(train: Any, name: str, index: int, file: str | None) -> None:
    field = f"spike_times[{index}]"
    try:
        times = np.asarray(train, dtype=float)
    except (TypeError, ValueError):
        raise ConversionError(f"{name} has spike times that are not numbers", file=file, field=field,
                              fix="give spike times as an array of seconds") from None
    if times.ndim != 1:
        raise ConversionError(f"{name} has spike times of shape {times.shape}", file=file, field=field,
                              fix="give a one-dimensional array of spike times per unit")
    if not np.all(np.isfinite(times)):
        raise ConversionError(f"{name} has NaN or infinite spike times", file=file, field=field,
                              fix="remove the missing spikes")
    if times.size and times.min() < 0:
        raise ConversionError(f"{name} has negative spike times (first: {times.min():g} s)", file=file, field=field,
                              fix="give spike times in seconds from the session start (>= 0)")
    if np.any(np.diff(times) < 0):
        first = int(np.argmax(np.diff(times) < 0)) + 1
        raise ConversionError(f"{name} has unsorted spike times (spike {first} comes before spike {first - 1})",
                              file=file, field=field, fix="sort each unit's spike times (np.sort)")


def _check_trials(trials: pd.DataFrame, file: str | None) -> None:
    if not isinstance(trials, pd.DataFrame):
        raise ConversionError("trials is not a pandas DataFrame", file=file, field="trials",
                              fix="give a DataFrame with start_time and stop_time columns")
    if trials.empty:
        return
    for column in ("start_time", "stop_time"):
        if column not in trials.columns:
            raise ConversionError(f"the trials table has no {column!r} column", file=file, field=f"trials.{column}",
                                  fix="add start_time and stop_time (s) to every trial")
        values = pd.to_numeric(trials[column], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            row = int(np.argmax(~np.isfinite(values)))
            raise ConversionError(f"trial row {row} has a missing or non-numeric {column}", file=file,
                                  field=f"trials.{column}[{row}]", fix=f"give every trial a {column} in seconds")
    backwards = np.flatnonzero(trials["stop_time"].to_numpy(float) < trials["start_time"].to_numpy(float))
    if backwards.size:
        row = int(backwards[0])
        raise ConversionError(
            f"trial row {row} stops before it starts (start_time {trials['start_time'].iloc[row]:g} s, "
            f"stop_time {trials['stop_time'].iloc[row]:g} s); {backwards.size} such rows in all",
            file=file, field=f"trials.stop_time[{row}]", fix="make stop_time >= start_time in every trial",
        )


def _check_session(recording: SpikeRecording, file: str | None) -> None:
    start = recording.session_start_time
    if not isinstance(start, dt.datetime) or start.tzinfo is None:
        raise ConversionError(
            f"session_start_time {start!r} is not a timezone-aware datetime", file=file, field="session_start_time",
            fix="give e.g. datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)",
        )
    rate = recording.sampling_rate
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not np.isfinite(rate) or rate <= 0:
        raise ConversionError(f"sampling_rate {rate!r} is not a positive number", file=file, field="sampling_rate",
                              fix="give the acquisition rate in Hz (e.g. 30000)")
    if not str(recording.session_id).strip():
        raise ConversionError("the session has no id", file=file, field="session_id", fix="give a session_id")
    subject = recording.subject
    unknown = sorted(set(subject) - set(SUBJECT_FIELDS))
    if unknown:
        raise ConversionError(f"unknown subject fields {unknown}", file=file, field="subject",
                              fix=f"use only {', '.join(SUBJECT_FIELDS)}")
    if not str(subject.get("subject_id") or "").strip():
        raise ConversionError("the subject has no subject_id", file=file, field="subject.subject_id",
                              fix="give a coded subject id (never the person's name)")
    if subject.get("sex") is not None and subject["sex"] not in NWB_SEXES:
        raise ConversionError(f"subject sex {subject['sex']!r} is not one of {NWB_SEXES}", file=file,
                              field="subject.sex", fix="use 'M', 'F', 'U' (unknown) or 'O' (other)")
    if subject.get("age") is not None:
        iso_age(subject["age"], file=file)
    birth = subject.get("date_of_birth")
    if birth is not None and not isinstance(birth, dt.date):
        raise ConversionError(f"date_of_birth {birth!r} is not a date", file=file, field="subject.date_of_birth",
                              fix="give a datetime.date, or leave it out and give the age")


# --------------------------------------------------------------------------------------------
# building the in-memory NWBFile


def _build_nwbfile(recording: SpikeRecording, *, deidentify: bool, shift: int, file: str):
    from pynwb import NWBFile

    meta = recording.metadata
    start = shift_date(recording.session_start_time, shift)
    notes = [meta.get("notes"), deidentification_note(shift) if deidentify else None]
    experimenter = meta.get("experimenter")
    nwbfile = NWBFile(
        session_description=recording.session_description,
        identifier=str(uuid.uuid4()),
        session_start_time=start,
        timestamps_reference_time=start,
        session_id=str(recording.session_id),
        experimenter=[experimenter] if isinstance(experimenter, str) else experimenter,
        experiment_description=meta.get("experiment_description"),
        institution=meta.get("institution"),
        lab=meta.get("lab"),
        keywords=list(meta.get("keywords", DEFAULT_KEYWORDS)),
        related_publications=meta.get("related_publications"),
        notes="\n".join(note for note in notes if note) or None,
        subject=_subject(recording, deidentify=deidentify, file=file),
    )
    _add_electrodes(nwbfile, recording)
    _add_units(nwbfile, recording)
    if not recording.trials.empty:
        _add_trials(nwbfile, recording.trials)
    return nwbfile


def _subject(recording: SpikeRecording, *, deidentify: bool, file: str):
    from pynwb.file import Subject

    if deidentify:
        fields = deidentify_subject(recording.subject, recording.session_start_time, file=file)
    else:
        fields = {key: value for key, value in recording.subject.items() if value is not None}
        if "age" in fields:
            fields["age"] = iso_age(fields["age"], file=file)
        if "name" in fields:
            name = f"name: {fields.pop('name')}"
            fields["description"] = f"{fields['description']}; {name}" if fields.get("description") else name
        if "date_of_birth" in fields and not isinstance(fields["date_of_birth"], dt.datetime):
            birth = fields["date_of_birth"]
            fields["date_of_birth"] = dt.datetime(birth.year, birth.month, birth.day,
                                                  tzinfo=recording.session_start_time.tzinfo)
    fields["subject_id"] = str(fields["subject_id"])
    return Subject(**fields)


def _device_fields(device: Any) -> dict[str, str]:
    if device is None:
        return dict(DEFAULT_DEVICE)
    if isinstance(device, str):
        return {"name": device, "description": f"{device} used for single-unit recording"}
    return dict(device)


def _create_device(nwbfile, fields: dict[str, str]):
    manufacturer = fields.pop("manufacturer", None)
    if manufacturer is not None:  # NWB 2.9 keeps the manufacturer on a DeviceModel
        fields["model"] = nwbfile.create_device_model(
            name=f"{fields['name']} model", manufacturer=manufacturer, description=f"model of the {fields['name']}")
    return nwbfile.create_device(**fields)


def _add_electrodes(nwbfile, recording: SpikeRecording) -> None:
    device = _create_device(nwbfile, _device_fields(recording.metadata.get("device")))
    groups = {}
    for location in dict.fromkeys(recording.electrode_location):
        groups[location] = nwbfile.create_electrode_group(
            name=location.replace("/", "-"),
            description=f"electrodes in {location}",
            location=location,
            device=device,
        )
    for location in recording.electrode_location:
        nwbfile.add_electrode(group=groups[location], location=location)


def _add_units(nwbfile, recording: SpikeRecording) -> None:
    # Whole columns at once: hdmf converts a column built row by row one value at a time.
    from hdmf.common import DynamicTableRegion, VectorData, VectorIndex
    from pynwb.misc import Units

    trains = [np.asarray(train, dtype=np.float64) for train in recording.spike_times]
    spike_times = VectorData(name="spike_times", description="spike times of each unit (s from session start)",
                             data=np.concatenate(trains))
    electrodes = DynamicTableRegion(name="electrodes", description="the electrode each unit was recorded on",
                                    data=np.asarray(recording.electrode, dtype=np.int64), table=nwbfile.electrodes)
    columns = [
        spike_times,
        VectorIndex(name="spike_times_index", data=np.cumsum([len(train) for train in trains]), target=spike_times),
        electrodes,
        VectorIndex(name="electrodes_index", data=np.arange(1, len(trains) + 1), target=electrodes),
        VectorData(name="unit_name", description="unit identifier given by the spike sorter or simulator",
                   data=[str(unit) for unit in recording.unit_ids]),
        VectorData(name="brain_area", description="brain region the unit was recorded in",
                   data=list(recording.brain_area)),
    ]
    nwbfile.units = Units(
        name="units",
        description="spike-sorted single and multi units; spike times in seconds from session start",
        resolution=1.0 / float(recording.sampling_rate),
        electrode_table=nwbfile.electrodes,
        columns=columns,
    )


def _add_trials(nwbfile, trials: pd.DataFrame) -> None:
    from hdmf.common import VectorData
    from pynwb.epoch import TimeIntervals

    columns = [
        VectorData(name=str(name), description=MEMORY_TRIAL_COLUMNS.get(name, f"trial column {name}"),
                   data=_column_values(trials[name]))
        for name in trials.columns
    ]
    nwbfile.trials = TimeIntervals(name="trials", description="one row per trial of the task", columns=columns)


def _column_values(column: pd.Series) -> np.ndarray | list[str]:
    """The column as an array HDF5 stores with its type (bool, int, float), or a list of str."""
    for is_type, dtype in ((pd.api.types.is_bool_dtype, bool), (pd.api.types.is_integer_dtype, np.int64),
                           (pd.api.types.is_float_dtype, np.float64)):
        if is_type(column):
            return column.to_numpy(dtype=dtype)
    return [str(value) for value in column]
