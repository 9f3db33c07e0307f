"""Events for :func:`b2m_neuro.convert.eeg_to_bids` that are not in the recording's annotations.

Two sources, each returned as ``mne.Annotations`` (onsets in seconds from the recording's first
sample, no date) with a description for every kind of event and, where known, its integer code
(the ``value`` column of ``events.tsv``):

- a trigger channel (BioSemi ``Status``, ``STI 014``, ...), read with ``mne.find_events``: one
  event per change to a non-zero code, described by the code (``"128"``);
- an events table the user gives (``.tsv`` or ``.csv``, or a DataFrame): ``onset`` (s, required),
  ``duration`` (s, default 0), ``trial_type`` (default ``"event"``), an optional integer ``value``
  and any further columns, which become columns of ``events.tsv``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from b2m_neuro.errors import ConversionError

if TYPE_CHECKING:
    import mne

__all__ = ["trigger_annotations", "table_annotations", "event_codes"]

DEFAULT_TRIAL_TYPE = "event"  # trial_type of table rows that name none
_WRITTEN_BY_MNE_BIDS = ("sample",)  # columns of a given table that mne-bids recomputes


def trigger_annotations(
    raw: mne.io.BaseRaw, stim_channel: str, *, mask: int | None, source: str
) -> tuple[mne.Annotations, dict[str, int]]:
    """The trigger codes on ``stim_channel`` as annotations, and each description's code.

    ``mask`` keeps only these bits of the channel (BioSemi: ``65535``, since the upper bits of
    ``Status`` hold the amplifier's status, not triggers).
    """
    import mne

    if stim_channel not in raw.ch_names:
        stim = [name for name, kind in zip(raw.ch_names, raw.get_channel_types(), strict=True) if kind == "stim"]
        raise ConversionError(
            f"the recording has no channel {stim_channel!r}",
            file=source,
            field="stim_channel",
            fix=f"name its trigger channel ({', '.join(stim) or 'it has none marked as stim'})",
        )
    try:
        events = mne.find_events(raw, stim_channel=stim_channel, shortest_event=1, mask=mask, verbose="error")
    except ValueError as error:
        raise ConversionError(f"the trigger channel cannot be read ({error})", file=source, field="stim_channel",
                              fix="check that it holds integer trigger codes") from error
    if len(events) == 0:
        raise ConversionError(
            f"the trigger channel {stim_channel!r} holds no trigger codes",
            file=source,
            field="stim_channel",
            fix="name the channel that holds the triggers, or leave stim_channel out",
        )
    onsets = (events[:, 0] - raw.first_samp) / raw.info["sfreq"]
    descriptions = [str(code) for code in events[:, 2]]
    annotations = mne.Annotations(onsets, np.zeros(len(events)), descriptions)
    return annotations, {description: int(description) for description in descriptions}


def check_within_recording(times: np.ndarray, duration_s: float, *, what: str, item: str, file: str,
                           field: str) -> None:
    """ConversionError naming the count and the first of ``times`` (s) outside ``[0, duration_s)``."""
    outside = (times < 0) | (times >= duration_s)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ConversionError(
            f"{int(outside.sum())} {what} lie outside the recording (0 to {duration_s:.3f} s), the first is "
            f"{item} {first} at {times[first]:.3f} s",
            file=file,
            field=field,
            fix="give onsets in seconds from the recording's first sample",
        )


def table_annotations(
    table: str | os.PathLike | pd.DataFrame, *, duration_s: float
) -> tuple[mne.Annotations, dict[str, int]]:
    """The rows of an events table as annotations, and each trial type's ``value`` code if given."""
    import mne

    events, name = _read_table(table)
    onset = _numbers(events, "onset", name, fix="give each event's onset in seconds from the recording's first sample")
    check_within_recording(onset, duration_s, what="events", item="row", file=name, field="onset")
    duration = np.zeros(onset.size)
    if "duration" in events:
        given = events["duration"].replace({"n/a": "0", "": "0"})
        duration = _numbers(events.assign(duration=given), "duration", name, fix="give durations in seconds, or n/a")
        if (duration < 0).any():
            raise ConversionError("an event has a negative duration", file=name, field="duration",
                                  fix="give durations of 0 s or more")  # fmt: skip
    trial_type = events["trial_type"] if "trial_type" in events else pd.Series(DEFAULT_TRIAL_TYPE, index=events.index)
    codes = _value_codes(events, trial_type, name) if "value" in events else {}
    extra = [c for c in events.columns if c not in ("onset", "duration", "trial_type", "value", *_WRITTEN_BY_MNE_BIDS)]
    extras = events[extra].to_dict("records") if extra else None
    return mne.Annotations(onset, duration, trial_type.tolist(), extras=extras), codes


def event_codes(descriptions: Iterable[str], known: Mapping[str, int]) -> dict[str, int]:
    """A distinct integer code for every description: ``known`` ones as given, the rest numbered after."""
    codes = dict(known)
    taken = set(codes.values())
    next_code = 1
    for description in sorted(set(descriptions) - set(codes)):
        while next_code in taken:
            next_code += 1
        codes[description] = next_code
        taken.add(next_code)
    return codes


def _read_table(table: str | os.PathLike | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(table, pd.DataFrame):
        return table.astype(str).mask(table.isna(), "n/a").reset_index(drop=True), "<events table>"  # missing as in a TSV
    path = Path(table)
    if not path.is_file():
        raise ConversionError("the events table does not exist", file=path, field="events", fix="check the path")
    try:
        events = pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ConversionError(f"the events table cannot be read ({error})", file=path, field="events",
                              fix="write it as tab-separated text with a header row (onset, duration, trial_type)") from error  # fmt: skip
    if "onset" not in events or events.empty:
        raise ConversionError("the events table needs an 'onset' column and at least one row", file=path,
                              field="onset", fix="name the column of event onsets (s) 'onset'")  # fmt: skip
    return events, str(path)


def _numbers(events: pd.DataFrame, column: str, name: str, *, fix: str) -> np.ndarray:
    values = pd.to_numeric(events[column], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConversionError(f"row {row} has {column} {events[column].iloc[row]!r}, not a number of seconds",
                              file=name, field=column, fix=fix)  # fmt: skip
    return values


def _value_codes(events: pd.DataFrame, trial_type: pd.Series, name: str) -> dict[str, int]:
    """``trial_type -> value`` when every trial type has one integer value and no two share one."""
    fix = "give each trial_type one integer value (or drop the value column)"
    values = pd.to_numeric(events["value"], errors="coerce")
    if not (np.isfinite(values) & (values == values.round())).all():
        raise ConversionError("the value column holds entries that are not integers", file=name, field="value", fix=fix)
    pairs = pd.DataFrame({"trial_type": trial_type, "value": values.astype(int)}).drop_duplicates()
    if pairs["trial_type"].duplicated().any() or pairs["value"].duplicated().any():
        raise ConversionError("trial types and values do not pair one to one", file=name, field="value", fix=fix)
    return dict(zip(pairs["trial_type"], pairs["value"].tolist(), strict=True))
