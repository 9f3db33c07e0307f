"""Several sessions -> a local dandiset: ``dandiset.yaml`` + ``sub-<id>/sub-<id>_ses-<id>_ecephys.nwb``.

This is the layout ``dandi organize`` produces and ``dandi validate`` checks, so a folder written
here can be validated and uploaded with the ``dandi`` client as it is.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from b2m_neuro._util.files import atomic_path, check_writable_target
from b2m_neuro._util.progress import track
from b2m_neuro.convert.deidentify import DEFAULT_DATE_SHIFT_DAYS
from b2m_neuro.convert.spikes import check_recording, spikes_to_nwb
from b2m_neuro.errors import ConversionError
from b2m_neuro.recording import SpikeRecording

__all__ = ["dandi_path", "write_dandiset"]


def dandi_path(recording: SpikeRecording) -> Path:
    """Return the DANDI file name of a session, relative to the dandiset root.

    Examples
    --------
    >>> import datetime as dt, pandas as pd
    >>> rec = SpikeRecording([], [], [], [], [], pd.DataFrame(), {"subject_id": "P_01"}, "2",
    ...                      dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    >>> dandi_path(rec).as_posix()
    'sub-P01/sub-P01_ses-2_ecephys.nwb'
    """
    subject = _label(recording.subject.get("subject_id"), "subject.subject_id")
    session = _label(recording.session_id, "session_id")
    return Path(f"sub-{subject}") / f"sub-{subject}_ses-{session}_ecephys.nwb"


def _label(value: object, field: str) -> str:
    label = re.sub(r"[^A-Za-z0-9]", "", str(value or ""))
    if not label:
        raise ConversionError(f"{value!r} gives an empty DANDI file-name label", field=field,
                              fix="use ids with letters or digits")
    return label


def write_dandiset(
    recordings: Sequence[SpikeRecording],
    root: str | os.PathLike,
    *,
    name: str = "b2m_neuro sessions",
    description: str = "Spike-sorted sessions written by b2m_neuro",
    overwrite: bool = False,
    deidentify: bool = True,
    date_shift_days: int = DEFAULT_DATE_SHIFT_DAYS,
    progress: bool = True,
) -> list[Path]:
    """Write sessions as NWB files in DANDI layout under ``root`` (created if missing).

    Every session is checked and every target path tested before the first file is written,
    so a bad session or an existing file (without ``overwrite=True``) leaves ``root`` untouched.
    A minimal ``dandiset.yaml`` (``name``, ``description``) is written if ``root`` has none.

    Parameters
    ----------
    recordings
        The sessions; their (subject id, session id) pairs must be distinct.
    root
        The dandiset folder.
    name, description
        Written to a new ``dandiset.yaml``.
    overwrite, deidentify, date_shift_days
        As in :func:`~b2m_neuro.convert.spikes_to_nwb`.
    progress
        Show a progress bar over the sessions.

    Returns
    -------
    list of Path
        The NWB files written, in the order of ``recordings``.
    """
    root = Path(root)
    targets = [root / dandi_path(recording) for recording in recordings]
    duplicated = {str(path) for path in targets if targets.count(path) > 1}
    if duplicated:
        raise ConversionError(f"several sessions would be written to {sorted(duplicated)}", file=root,
                              field="session_id", fix="give every session a distinct (subject_id, session_id)")
    for recording, target in zip(recordings, targets, strict=True):
        check_recording(recording, file=target)
        if target.exists():  # the session folder may not exist yet, so test only an existing file
            check_writable_target(target, overwrite=overwrite, error=ConversionError)
    root.mkdir(parents=True, exist_ok=True)
    _write_dandiset_yaml(root / "dandiset.yaml", name=name, description=description)
    for recording, target in track(zip(recordings, targets, strict=True), description="writing NWB sessions",
                                   total=len(targets), progress=progress):
        target.parent.mkdir(exist_ok=True)
        spikes_to_nwb(recording, target, overwrite=overwrite, deidentify=deidentify, date_shift_days=date_shift_days)
    return targets


def _write_dandiset_yaml(path: Path, *, name: str, description: str) -> None:
    if path.exists():
        return
    # JSON strings are valid YAML scalars, so json.dumps quotes them safely.
    with atomic_path(path) as tmp:
        tmp.write_text(f"name: {json.dumps(name)}\ndescription: {json.dumps(description)}\n", encoding="utf-8")
