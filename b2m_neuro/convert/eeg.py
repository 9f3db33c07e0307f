"""EEG recording (+ events, + video frames) -> a BIDS EEG dataset (mne-bids), de-identified by default.

Output format: every recording is rewritten, in chunks, as BrainVision with 32-bit float samples
(lossless for any input, readable by every BIDS tool) and handed to mne-bids ``write_raw_bids``,
which copies it into place, anonymizes the dates and writes ``channels.tsv``, ``electrodes.tsv``
and ``coordsystem.json`` (when the montage is known), ``events.tsv`` and the sidecars. Then:

- ``events.tsv`` holds the recording's own annotations (BrainVision markers, EDF+ annotations),
  plus, when given, the codes of a trigger channel, the rows of an events table (see
  :mod:`b2m_neuro.convert.eeg_events`) and one row per video frame (``trial_type`` = ``frame``)
  whose ``stim_file`` names the frame's PNG relative to ``stimuli/``:
  ``sub-<s>[_ses-<x>]_task-<t>[_run-<r>]/frame-NNNNNN.png``;
- behaviour (steering, pedals, ...) is written as ``*_recording-behaviour_physio.tsv.gz`` + ``.json``;
- ``dataset_description.json`` and ``README`` come from ``bids_templates/raw_*``.

Everything is first written to a temporary BIDS root beside ``bids_root`` and only then moved
into place (or merged into an existing dataset), so a failure leaves ``bids_root`` untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import shutil
import string
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from b2m_neuro._util.files import atomic_path
from b2m_neuro._util.progress import track
from b2m_neuro._version import __version__
from b2m_neuro.bids_templates import read_template
from b2m_neuro.convert.deidentify import DEFAULT_DATE_SHIFT_DAYS, check_shift
from b2m_neuro.convert.eeg_events import check_within_recording, event_codes, table_annotations, trigger_annotations
from b2m_neuro.errors import ConversionError

if TYPE_CHECKING:
    import mne

__all__ = ["eeg_to_bids", "read_recording", "write_brainvision", "write_brainvision_blocks", "write_frame_file", "read_frame_file", "FRAME_EVENT"]

FRAME_EVENT = "frame"  # trial_type of the frame rows in events.tsv
_CHUNK_SAMPLES = 1 << 18  # samples per channel read and written at a time
_IDENTIFYING = ("his_id", "first_name", "middle_name", "last_name", "birthday")


def eeg_to_bids(
    raw_or_path: mne.io.BaseRaw | str | os.PathLike,
    *,
    bids_root: str | os.PathLike,
    subject: str,
    frame_times: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    stim_channel: str | None = None,
    trigger_mask: int | None = None,
    events: str | os.PathLike | pd.DataFrame | None = None,
    session: str | None = None,
    task: str = "driving",
    run: int | None = None,
    behaviour: pd.DataFrame | None = None,
    line_freq: float | None = None,
    overwrite: bool = False,
    deidentify: bool = True,
    date_shift_days: int = DEFAULT_DATE_SHIFT_DAYS,
    dataset_name: str = "b2m_neuro EEG teachers",
    progress: bool = True,
) -> Path:
    """Convert one EEG recording, its events and (optionally) its video frames to BIDS.

    The recording's own annotations (BrainVision markers, EDF+ annotations) always become rows
    of ``events.tsv``; ``stim_channel``, ``events`` and ``frame_times`` add more.

    Parameters
    ----------
    raw_or_path
        A recording mne reads (BDF, EDF, BrainVision ``.vhdr``, FIF, EEGLAB ``.set``, ...), as a
        path or an ``mne.io.Raw``.
    bids_root
        The BIDS dataset to write or add to (created if missing).
    subject, session, task, run
        BIDS entities of the recording.
    frame_times
        Onset of each video frame, in seconds from the recording's first sample (rows with
        ``trial_type`` ``frame``); ``None``: a recording without video.
    frames
        Optional ``(n_frames, height, width[, 3])`` uint8 images, saved as PNG under
        ``stimuli/``; one per entry of ``frame_times``.
    stim_channel
        A trigger channel (e.g. BioSemi ``"Status"``) whose codes become events (``trial_type``
        the code, e.g. ``"128"``; ``value`` the code), found with ``mne.find_events``.
    trigger_mask
        Keep only these bits of the trigger channel (BioSemi: ``65535``; its upper bits hold
        the amplifier's status).
    events
        An events table (``.tsv``, ``.csv`` or DataFrame): ``onset`` (s from the recording's first
        sample), optional ``duration`` (s), ``trial_type``, integer ``value``, and any further
        columns, which are kept in ``events.tsv``.
    behaviour
        Optional table with a ``time`` column (s, recording clock, constant step) and one column
        per behavioural signal (e.g. ``steering``, ``throttle``, ``brake``).
    line_freq
        Power-line frequency (Hz) for the sidecar; default: the recording's, else 50.
    overwrite
        Replace this subject/session/task/run if it is already in ``bids_root``.
    deidentify
        Remove names, birth dates and hospital ids and move the dates back by
        ``-date_shift_days`` days (mne-bids ``anonymize``); the shift is recorded as
        ``DateShiftDays`` in the ``*_eeg.json`` sidecar. ``False`` keeps them as recorded.
    date_shift_days
        Whole days added to the recording date (negative: earlier) when de-identifying.
    dataset_name
        ``Name`` in ``dataset_description.json`` for a new dataset.
    progress
        Show a progress bar while the samples are copied.

    Returns
    -------
    Path
        The written EEG header (``.../eeg/sub-<s>..._eeg.vhdr``).

    Raises
    ------
    ConversionError
        Unreadable or corrupt recording; frame times outside the recording or not increasing;
        frames and frame times of different lengths; a missing or empty trigger channel; an
        events table without onsets, with onsets outside the recording or with values that do
        not pair one to one with trial types; an existing recording without ``overwrite``;
        irregular behaviour samples.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from b2m_neuro.simulate import driving_session
    >>> s = driving_session(duration_s=6, sfreq=128)
    >>> root = pathlib.Path(tempfile.mkdtemp()) / "bids"
    >>> eeg_to_bids(s.raw, frame_times=s.frame_times, frames=s.frames, bids_root=root, subject="01",
    ...             progress=False).name
    'sub-01_task-driving_eeg.vhdr'
    >>> eeg_to_bids("tests/data/biosemi/test_bdf_stim_channel.bdf", stim_channel="Status", bids_root=root,
    ...             subject="02", task="oddball", progress=False).name  # doctest: +SKIP
    'sub-02_task-oddball_eeg.vhdr'
    """
    import mne_bids

    raw, source = read_recording(raw_or_path)
    days = check_shift(date_shift_days)
    for field, label in (("subject", subject), ("session", session), ("task", task)):
        _check_label(field, label)
    frame_times = None if frame_times is None and frames is None else _check_frames(raw, source, frame_times, frames)
    annotations, codes, levels = _gather_events(raw, source, frame_times=frame_times, stim_channel=stim_channel,
                                                trigger_mask=trigger_mask, events=events)
    bids_root = Path(bids_root)
    entities = {"subject": str(subject), "session": None if session is None else str(session), "task": task, "run": run}
    target = mne_bids.BIDSPath(root=bids_root, datatype="eeg", suffix="eeg", extension=".vhdr", **entities)
    if target.fpath.exists() and not overwrite:
        raise ConversionError(
            "this recording is already in the BIDS dataset",
            file=target.fpath,
            field="overwrite",
            fix="pass overwrite=True (--overwrite) or choose another subject, session or run",
        )
    if not bids_root.parent.is_dir():
        raise ConversionError("the folder of the BIDS root does not exist", file=bids_root.parent, field="bids_root",
                              fix=f"create it first (mkdir -p {bids_root.parent})")
    with _staging_root(bids_root) as staging:
        with tempfile.TemporaryDirectory(prefix="b2m-eeg-", dir=staging.parent) as scratch:
            staged_raw = _restage(raw, source, Path(scratch) / "recording.vhdr", annotations=annotations,
                                  deidentify=deidentify, progress=progress)
            staged_raw.info["line_freq"] = line_freq or raw.info["line_freq"] or 50.0
            bids_path = target.copy().update(root=staging)
            try:
                mne_bids.write_raw_bids(
                    staged_raw,
                    bids_path,
                    event_id=event_codes(staged_raw.annotations.description, codes),
                    anonymize={"daysback": -days, "keep_his": False} if deidentify else None,
                    overwrite=True,
                    verbose="error",
                )
            except (ValueError, RuntimeError) as error:
                raise ConversionError(f"mne-bids cannot write this recording ({error})", file=source, field="raw_or_path",
                                      fix="check the channel types and the recording's metadata") from error
        stim_dir = _stimulus_folder(bids_path) if frames is not None else None
        _describe_events(bids_path, stim_dir, levels, n_frames=0 if frame_times is None else frame_times.size)
        if frames is not None:
            _save_frames(frames, staging / "stimuli" / stim_dir, progress=progress)
        if behaviour is not None:
            _write_behaviour(behaviour, bids_path, source=source)
        _record_conversion(bids_path, deidentify=deidentify, days=days)
        _write_dataset_files(staging, dataset_name)
        _merge_into(staging, bids_root)
    return target.fpath


def read_recording(raw_or_path: mne.io.BaseRaw | str | os.PathLike) -> tuple[mne.io.BaseRaw, str]:
    """Open a recording lazily with ``mne.io.read_raw``; return it and a name for messages."""
    import mne

    if isinstance(raw_or_path, mne.io.BaseRaw):
        name = raw_or_path.filenames[0] if raw_or_path.filenames and raw_or_path.filenames[0] else "<in-memory recording>"
        return raw_or_path, str(name)
    path = Path(raw_or_path)
    if not path.is_file():
        raise ConversionError("the EEG recording does not exist", file=path, field="raw_or_path", fix="check the path")
    try:
        raw = mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as error:  # mne raises many types for unreadable files
        raise ConversionError(
            f"mne cannot read this EEG recording ({type(error).__name__}: {error})",
            file=path,
            field="raw_or_path",
            fix="check that the file is complete and in a format mne reads (BDF, EDF, BrainVision, FIF, EEGLAB)",
        ) from error
    return raw, str(path)


def _check_label(field: str, label: Any) -> None:
    if label is not None and not (isinstance(label, str | int) and str(label).isalnum() and str(label).isascii()):
        raise ConversionError(f"{field} {label!r} is not a BIDS label", field=field,
                              fix="use letters and digits only (e.g. '01'), never a name")


def _check_frames(raw: mne.io.BaseRaw, source: str, frame_times: Any, frames: np.ndarray | None) -> np.ndarray:
    if frame_times is None:
        raise ConversionError("frames were given without frame_times", file=source, field="frame_times",
                              fix="pass the onset (s) of each frame as frame_times")  # fmt: skip
    times = np.asarray(frame_times, dtype=float)
    duration = raw.n_times / raw.info["sfreq"]
    if times.ndim != 1 or times.size == 0 or not np.isfinite(times).all():
        raise ConversionError("frame_times must be a non-empty 1-D array of finite seconds", file=source, field="frame_times")
    if np.any(np.diff(times) <= 0):
        raise ConversionError("frame_times are not strictly increasing", file=source, field="frame_times",
                              fix="sort the frame times and remove duplicates")
    check_within_recording(times, duration, what="frame times", item="frame", file=source, field="frame_times")
    if frames is not None:
        shape = np.shape(frames)
        if np.asarray(frames[:1]).dtype != np.uint8:
            raise ConversionError(f"frames must be uint8 images, got {np.asarray(frames[:1]).dtype}", file=source,
                                  field="frames", fix="convert with np.clip(frames, 0, 255).astype(np.uint8)")
        if len(shape) not in (3, 4) or shape[0] != times.size:
            raise ConversionError(
                f"frames has shape {shape} but there are {times.size} frame times",
                file=source,
                field="frames",
                fix="pass one image (height x width [x 3]) per frame time",
            )
    return times


@contextlib.contextmanager
def _staging_root(bids_root: Path):
    staging = Path(tempfile.mkdtemp(prefix=f".{bids_root.name}.", suffix=".partial", dir=bids_root.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the dataset gets the usual mode
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_brainvision(raw: mne.io.BaseRaw, vhdr: Path, *, source: str = "", progress: bool = False) -> None:
    """Write ``raw`` as BrainVision (float32, microvolt scale), reading ``_CHUNK_SAMPLES`` at a time."""
    starts = range(0, raw.n_times, _CHUNK_SAMPLES)

    def blocks():
        for start in track(starts, description="copying EEG samples", total=len(starts), progress=progress):
            try:
                yield raw.get_data(start=start, stop=min(start + _CHUNK_SAMPLES, raw.n_times))
            except Exception as error:
                raise ConversionError(
                    f"the samples from {start} on cannot be read ({type(error).__name__}: {error})",
                    file=source,
                    field="data",
                    fix="the file is truncated or corrupt; export it again from the recording software",
                ) from error

    write_brainvision_blocks(vhdr, ch_names=raw.ch_names, sfreq=raw.info["sfreq"], blocks=blocks(), meas_date=raw.info["meas_date"])


def write_brainvision_blocks(
    vhdr: Path, *, ch_names: list[str], sfreq: float, blocks: Iterable[np.ndarray], meas_date: dt.datetime | None = None
) -> None:
    """Write BrainVision files from ``blocks`` of samples (channels x times, volts), one block in memory at a time."""
    stem = vhdr.with_suffix("")
    channel_lines = "\n".join(f"Ch{i}={name.replace(',', chr(1))},,1,µV" for i, name in enumerate(ch_names, 1))
    vhdr.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n; Data written by b2m_neuro\n\n"
        f"[Common Infos]\nCodepage=UTF-8\nDataFile={stem.name}.eeg\nMarkerFile={stem.name}.vmrk\n"
        f"DataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels={len(ch_names)}\n"
        f"SamplingInterval={1e6 / sfreq!r}\n\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n\n"
        f"[Channel Infos]\n{channel_lines}\n",
        encoding="utf-8",
    )
    meas_date = meas_date or dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    stem.with_suffix(".vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem.name}.eeg\n\n[Marker Infos]\nMk1=New Segment,,1,1,0,{meas_date:%Y%m%d%H%M%S%f}\n",
        encoding="utf-8",
    )
    with open(stem.with_suffix(".eeg"), "wb") as handle:
        for block in blocks:
            np.ascontiguousarray((block * 1e6).T, dtype="<f4").tofile(handle)


def _restage(
    raw: mne.io.BaseRaw, source: str, vhdr: Path, *, annotations: mne.Annotations, deidentify: bool, progress: bool
) -> mne.io.BaseRaw:
    """Rewrite the recording as BrainVision and reopen it with the original's metadata and ``annotations``."""
    import mne

    write_brainvision(raw, vhdr, source=source, progress=progress)
    staged = mne.io.read_raw_brainvision(vhdr, preload=False, verbose="error")
    staged.set_channel_types(dict(zip(raw.ch_names, raw.get_channel_types(), strict=True)), verbose="error")
    staged.info["bads"] = list(raw.info["bads"])
    montage = raw.get_montage()
    if montage is not None:
        staged.set_montage(montage, on_missing="ignore", verbose="error")
    staged.set_annotations(annotations)
    subject_info = dict(raw.info.get("subject_info") or {})
    if deidentify:
        subject_info = {key: value for key, value in subject_info.items() if key not in _IDENTIFYING}
    with staged.info._unlock():
        staged.info["subject_info"] = subject_info or None
    return staged


def _shifted_annotations(raw: mne.io.BaseRaw) -> mne.Annotations:
    """The recording's annotations, with onsets from its first sample and no date."""
    import mne

    annotations = raw.annotations
    onset = annotations.onset - (raw.first_time if annotations.orig_time is not None else 0.0)
    return mne.Annotations(onset, annotations.duration, annotations.description)


def _gather_events(
    raw: mne.io.BaseRaw,
    source: str,
    *,
    frame_times: np.ndarray | None,
    stim_channel: str | None,
    trigger_mask: int | None,
    events: str | os.PathLike | pd.DataFrame | None,
) -> tuple[mne.Annotations, dict[str, int], dict[str, str]]:
    """Every event as one set of annotations, the known integer codes, and a description of each kind."""
    import mne

    annotations = _shifted_annotations(raw)
    levels = dict.fromkeys(annotations.description, "annotation stored in the recording")
    codes: dict[str, int] = {}
    table_types: set[str] = set()
    if events is not None:
        rows, codes = table_annotations(events, duration_s=raw.n_times / raw.info["sfreq"])
        name = Path(events).name if isinstance(events, str | os.PathLike) else "the events table given"
        table_types = set(rows.description)
        levels.update(dict.fromkeys(table_types, f"event from {name}"))
        annotations += rows
    if stim_channel is not None:
        triggers, trigger_codes = trigger_annotations(raw, stim_channel, mask=trigger_mask, source=source)
        clash = sorted(set(trigger_codes) & table_types) or sorted(set(trigger_codes.values()) & set(codes.values()))
        if clash:
            raise ConversionError(f"the events table and the trigger channel both use the trial types or values {clash}",
                                  file=source, field="events", fix="rename those trial types or values in the events table")  # fmt: skip
        codes.update(trigger_codes)
        levels.update({code: f"trigger code {code} on channel {stim_channel}" for code in trigger_codes})
        annotations += triggers
    if frame_times is not None:
        duration = float(np.median(np.diff(frame_times))) if frame_times.size > 1 else 0.0
        annotations += mne.Annotations(frame_times, np.full(frame_times.size, duration), [FRAME_EVENT] * frame_times.size)
        levels[FRAME_EVENT] = "onset of a video frame shown to the participant"
    return annotations, codes, levels


def _stimulus_folder(bids_path) -> str:
    """The folder of this recording's frames, relative to ``stimuli/``."""
    return bids_path.copy().update(suffix=None, extension=None, datatype=None, root=None).basename


def _describe_events(bids_path, stim_dir: str | None, levels: dict[str, str], *, n_frames: int) -> None:
    """Check the frame rows of ``events.tsv``; add ``stim_file`` when the frames are saved; describe ``trial_type``."""
    events_tsv = bids_path.copy().update(suffix="events", extension=".tsv").fpath
    if not events_tsv.is_file():
        return  # a recording without events (e.g. resting state): mne-bids writes no events.tsv
    events = pd.read_csv(events_tsv, sep="\t", dtype=str, keep_default_na=False)
    is_frame = events["trial_type"] == FRAME_EVENT
    if n_frames and int(is_frame.sum()) != n_frames:
        raise ConversionError(
            f"mne-bids wrote {int(is_frame.sum())} frame events for {n_frames} frame times",
            file=events_tsv,
            field="trial_type",
            fix="frame times closer than one sample apart merge into one event; check frame_times",
        )
    if stim_dir is not None:
        events["stim_file"] = "n/a"
        events.loc[is_frame, "stim_file"] = [f"{stim_dir}/frame-{i:06d}.png" for i in range(n_frames)]
        events.to_csv(events_tsv, sep="\t", index=False)
    events_json = events_tsv.with_suffix(".json")
    sidecar = json.loads(events_json.read_text()) if events_json.exists() else {}
    sidecar["trial_type"] = {
        "Description": "Kind of event",
        "Levels": {name: levels.get(name, "event recorded with the EEG") for name in sorted(set(events["trial_type"]))},
    }
    if stim_dir is not None:
        sidecar["stim_file"] = {"Description": "The frame shown at this onset, relative to stimuli/ (n/a: not a frame)"}
    for column in sorted(set(events.columns) - {"onset", "duration", "trial_type", "value", "sample", "stim_file"}):
        sidecar[column] = {"Description": f"{column!r}, as given with the events of the recording"}
    events_json.write_text(json.dumps(sidecar, indent=2, ensure_ascii=False))


def _save_frames(frames: np.ndarray, folder: Path, *, progress: bool) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images = np.asarray(frames)
    for i in track(range(len(images)), description="saving frames", total=len(images), progress=progress):
        Image.fromarray(images[i]).save(folder / f"frame-{i:06d}.png", compress_level=1)


def _write_behaviour(behaviour: pd.DataFrame, bids_path, *, source: str) -> None:
    if "time" not in behaviour.columns or len(behaviour) < 2 or behaviour.shape[1] < 2:
        raise ConversionError("behaviour needs a 'time' column and at least one signal column, over 2+ rows",
                              file=source, field="behaviour")
    time = behaviour["time"].to_numpy(float)
    step = np.diff(time)
    if np.any(step <= 0) or np.ptp(step) > 1e-3 * np.median(step):
        raise ConversionError(
            "behaviour samples are not at a constant rate",
            file=source,
            field="behaviour.time",
            fix="resample the behaviour to a constant rate before converting",
        )
    columns = [column for column in behaviour.columns if column != "time"]
    physio = bids_path.copy().update(suffix="physio", extension=".tsv.gz", recording="behaviour")
    table = behaviour[columns].to_csv(sep="\t", header=False, index=False, float_format="%.6g")
    with open(physio.fpath, "wb") as raw_file, gzip.GzipFile(filename="", mode="wb", fileobj=raw_file, mtime=0) as handle:
        handle.write(table.encode("utf-8"))  # no file name or time in the gzip header
    sidecar = {
        "TaskName": physio.task,
        "SamplingFrequency": float(1 / np.median(step)),
        "StartTime": float(time[0]),
        "Columns": columns,
        **{column: {"Description": f"behavioural signal '{column}'"} for column in columns},
    }
    physio.copy().update(extension=".json").fpath.write_text(json.dumps(sidecar, indent=2))


def _record_conversion(bids_path, *, deidentify: bool, days: int) -> None:
    sidecar_path = bids_path.copy().update(extension=".json").fpath
    sidecar = json.loads(sidecar_path.read_text())
    if deidentify:
        sidecar["DateShiftDays"] = days
    sidecar_path.write_text(json.dumps(sidecar, indent=2, ensure_ascii=False))


def _write_dataset_files(root: Path, dataset_name: str) -> None:
    import mne_bids

    values = {"name": dataset_name, "version": __version__, "mne_bids_version": mne_bids.__version__}
    description = json.loads(read_template("raw_dataset_description.json"))
    description["Name"] = dataset_name
    for generator in description["GeneratedBy"]:
        generator.update({key: string.Template(value).substitute(values) for key, value in generator.items()})
    (root / "dataset_description.json").write_text(json.dumps(description, indent=2))
    (root / "README").write_text(string.Template(read_template("raw_README.md")).substitute(values))
    (root / "README.md").unlink(missing_ok=True)


def _merge_into(staging: Path, bids_root: Path) -> None:
    """Move the staged dataset to ``bids_root``, or merge it into an existing one."""
    if not bids_root.exists():
        os.replace(staging, bids_root)
        return
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        relative = path.relative_to(staging)
        destination = bids_root / relative
        if relative.name == "participants.tsv" and destination.exists():
            _merge_table(path, destination, key="participant_id")
        elif relative.name.endswith("_sessions.tsv") and destination.exists():
            _merge_table(path, destination, key="session_id")
        elif relative.name.endswith("_scans.tsv") and destination.exists():
            _merge_table(path, destination, key="filename")
        elif len(relative.parts) == 1 and destination.exists():
            continue  # keep the dataset's own description, README and participants.json
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)


def _merge_table(new: Path, existing: Path, *, key: str) -> None:
    old = pd.read_csv(existing, sep="\t", dtype=str, keep_default_na=False)
    added = pd.read_csv(new, sep="\t", dtype=str, keep_default_na=False)
    merged = pd.concat([old[~old[key].isin(added[key])], added], ignore_index=True).fillna("n/a")
    merged.to_csv(existing, sep="\t", index=False)


def write_frame_file(
    path: str | os.PathLike, frame_times: np.ndarray, *, frames: np.ndarray | None = None, behaviour: pd.DataFrame | None = None
) -> Path:
    """Save frame times (and optionally frames and behaviour) as the ``.npz`` that ``convert eeg --frames`` reads.

    Keys: ``frame_times``; ``frames`` (uint8 images); ``behaviour_time`` and one
    ``behaviour_<signal>`` per behaviour column.
    """
    arrays: dict[str, np.ndarray] = {"frame_times": np.asarray(frame_times, float)}
    if frames is not None:
        arrays["frames"] = np.asarray(frames)
    if behaviour is not None:
        arrays.update({f"behaviour_{column}": behaviour[column].to_numpy() for column in behaviour.columns})
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return path


def read_frame_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read frame times from a ``.npz`` (see :func:`write_frame_file`) or a ``.tsv``/``.csv`` with an ``onset`` column.

    Returns a dict with ``frame_times`` and, when present, ``frames`` and ``behaviour`` (DataFrame).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError("the frame file does not exist", file=path, field="frames", fix="check the path")
    try:
        if path.suffix in (".tsv", ".csv"):
            table = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
            if "onset" not in table:
                raise ConversionError("the frame table has no 'onset' column", file=path, field="onset",
                                      fix="name the column of frame times (s) 'onset'")
            return {"frame_times": table["onset"].to_numpy(float)}
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ConversionError(f"the frame file cannot be read ({error})", file=path, field="frames",
                              fix="pass a .npz written by write_frame_file or a .tsv with an onset column") from error
    if "frame_times" not in arrays:
        raise ConversionError("the frame file has no 'frame_times' array", file=path, field="frame_times",
                              fix="save the frame onsets (s) under the key 'frame_times'")
    found: dict[str, Any] = {"frame_times": arrays["frame_times"]}
    if "frames" in arrays:
        found["frames"] = arrays["frames"]
    signals = {key.removeprefix("behaviour_"): value for key, value in arrays.items() if key.startswith("behaviour_")}
    if signals:
        found["behaviour"] = pd.DataFrame(signals)
    return found
