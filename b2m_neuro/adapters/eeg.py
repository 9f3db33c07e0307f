"""BIDS EEG -> one lazy ``xarray.DataArray`` of per-frame EEG features, dims ``(frame, channel)``.

For each event of the spec's type (the video frames of our datasets, or the trials of any BIDS
EEG dataset), the adapter takes the EEG in a window after the event's onset, re-referenced and
band-passed as the :class:`EEGSpec` says, and reduces it to one number per channel: the mean
(an evoked-response amplitude) or the mean power. The work is split into chunks of
``spec.chunk_s`` seconds of recording, each a ``dask.delayed`` task that reads only its own
samples (plus ``spec.pad_s`` on each side so the zero-phase filter has no edge effects), so a
3-hour, 64-channel, 2048 Hz session never sits whole in memory.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from b2m_neuro._util.files import read_json_object, sha256
from b2m_neuro.errors import AdapterError

if TYPE_CHECKING:
    import mne

__all__ = ["EEGSpec", "load_eeg"]

FEATURES = ("mean", "power")


@dataclass(frozen=True)
class EEGSpec:
    """How EEG becomes one feature vector per frame (or per event).

    Parameters
    ----------
    event_type
        ``trial_type`` (in ``events.tsv``) of the events to use; ``None`` uses every event.
    channels
        Channels to keep, in this order; ``None`` keeps every EEG channel of the recording.
    reference
        ``"average"`` (mean of the kept channels that are not marked bad), a tuple of channel
        names whose mean is subtracted, or ``None`` to keep the recording's reference.
    l_freq, h_freq
        Band-pass edges (Hz) of a zero-phase Butterworth filter; ``None`` leaves that side open.
    filter_order
        Order of the Butterworth filter (applied forwards and backwards).
    window
        Start and end (s, relative to the event onset) of the samples reduced to the feature.
    feature
        ``"mean"``: the mean signal in the window (microvolts); ``"power"``: the mean squared
        signal (microvolts squared).
    pad_s
        Extra samples (s) read on each side of a chunk so that filter edges fall outside it.
    chunk_s
        Seconds of recording per lazy task.

    Examples
    --------
    >>> spec = EEGSpec(event_type="show_stimulus", l_freq=None, h_freq=30.0, window=(0.0, 0.2))
    >>> EEGSpec.from_json(spec.to_json()) == spec
    True
    """

    event_type: str | None = "frame"
    channels: tuple[str, ...] | None = None
    reference: str | tuple[str, ...] | None = "average"
    l_freq: float | None = 1.0
    h_freq: float | None = 40.0
    filter_order: int = 4
    window: tuple[float, float] = (0.0, 0.1)
    feature: str = "mean"
    pad_s: float = 2.0
    chunk_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("channels", "window"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.reference, list):
            object.__setattr__(self, "reference", tuple(self.reference))
        self._check()

    def _check(self) -> None:
        start, stop = self.window
        if not stop > start:
            _bad_spec("window", f"the window {self.window} does not end after it starts", "pass (start, stop) with stop > start")
        if self.feature not in FEATURES:
            _bad_spec("feature", f"unknown feature {self.feature!r}", f"use one of {', '.join(FEATURES)}")
        if isinstance(self.reference, str) and self.reference != "average":
            _bad_spec("reference", f"unknown reference {self.reference!r}", "use 'average', a tuple of channel names or None")
        for name in ("l_freq", "h_freq"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                _bad_spec(name, f"{name} must be positive, got {value!r}", "pass a frequency in Hz or None")
        if self.l_freq is not None and self.h_freq is not None and not self.h_freq > self.l_freq:
            _bad_spec("h_freq", f"h_freq {self.h_freq} is not above l_freq {self.l_freq}", "swap them")
        if self.chunk_s <= 0 or self.pad_s < 0 or self.filter_order < 1:
            _bad_spec("chunk_s", "chunk_s must be > 0, pad_s >= 0 and filter_order >= 1", "fix the spec")

    def to_json(self) -> str:
        """The spec as a JSON string (stored in the adapter output's ``attrs["spec"]``)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EEGSpec:
        """Rebuild a spec written by :meth:`to_json`."""
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            _bad_spec(unknown[0], f"unknown EEG spec fields {unknown}", f"use only {sorted(known)}")
        return cls(**values)


def _bad_spec(field: str, problem: str, fix: str) -> None:
    raise AdapterError(problem, field=f"spec.{field}", fix=fix)


def load_eeg(
    bids_root: str | os.PathLike,
    *,
    subject: str,
    task: str,
    session: str | None = None,
    run: int | None = None,
    spec: EEGSpec | None = None,
) -> xr.DataArray:
    """Per-frame EEG features of one BIDS EEG recording, as a lazy (dask) DataArray.

    Parameters
    ----------
    bids_root
        Root of a BIDS dataset with EEG (ours from :func:`b2m_neuro.convert.eeg_to_bids`, or any
        other, e.g. from OpenNeuro).
    subject, task, session, run
        BIDS entities of the recording.
    spec
        Events, channels, reference, filter, window and feature; default ``EEGSpec()`` (events of
        type ``frame``, every EEG channel, average reference, 1-40 Hz, mean over 0-100 ms).

    Returns
    -------
    xarray.DataArray
        float32, dims ``("frame", "channel")``, dask-backed (call ``.compute()`` or ``.values``).
        Coords along ``frame``: ``onset`` (s), ``stim_file`` (``"n/a"`` when none), ``trial_type``;
        along ``channel``: ``channel_type``, ``x``, ``y``, ``z`` (m, NaN when unknown), ``bad``;
        scalar ``session``. attrs: ``spec`` (JSON), ``source_file``, ``source_sha256``,
        ``subject``, ``session``, ``task``, ``sfreq``, ``units``.

    Raises
    ------
    AdapterError
        No such recording, an unreadable or corrupt file, no events (or none of the spec's type),
        channels named by the spec that the recording lacks, events whose window leaves the
        recording.

    Examples
    --------
    >>> eeg = load_eeg("tests/data/tiny_bids", subject="01", session="eeg", task="rest",
    ...                spec=EEGSpec(event_type=None, l_freq=None))  # doctest: +SKIP
    >>> eeg.dims, eeg.sizes["frame"]  # doctest: +SKIP
    (('frame', 'channel'), 2)
    """
    import dask
    import dask.array as da

    spec = EEGSpec() if spec is None else spec
    bids_path = _find_recording(Path(bids_root), subject=subject, session=session, task=task, run=run)
    info_raw = _read_bids_raw(bids_path)
    source = Path(bids_path.fpath)
    events = _read_events(bids_path, spec)
    channels, reference = _pick_channels(info_raw, spec, source)
    sfreq = float(info_raw.info["sfreq"])
    onsets = np.round(events["onset"].to_numpy(float) * sfreq).astype(np.int64)
    start, stop = _window_samples(spec.window, sfreq)
    _check_inside(onsets + start, onsets + stop, info_raw.n_times, source, events)

    blocks = []
    chunk_samples = max(int(spec.chunk_s * sfreq), 1)
    pad = int(spec.pad_s * sfreq)
    group = onsets // chunk_samples
    stat = Path(_sample_file(source)).stat()
    version = (stat.st_mtime_ns, stat.st_size)  # a rewritten file is opened afresh
    for value in np.unique(group):
        members = onsets[group == value]
        first, last = int(members.min() + start - pad), int(members.max() + stop + pad)
        task_ = dask.delayed(_chunk_features, pure=True)(
            (str(source), version), channels, reference, max(first, 0), min(last, info_raw.n_times),
            members, (start, stop), sfreq, spec,
        )
        blocks.append(da.from_delayed(task_, shape=(members.size, len(channels)), dtype=np.float32))
    data = da.concatenate(blocks, axis=0)
    positions, coordinate_system = _electrode_positions(bids_path)
    return xr.DataArray(
        data,
        dims=("frame", "channel"),
        coords=_coords(info_raw, channels, events, session, positions),
        name="eeg",
        attrs={
            "spec": spec.to_json(),
            "source_file": str(source),
            "source_sha256": sha256(source),
            "source_data_sha256": sha256(_sample_file(source)),
            "subject": str(subject),
            "session": "" if session is None else str(session),
            "task": task,
            "sfreq": sfreq,
            "units": "uV" if spec.feature == "mean" else "uV^2",
            "kind": "frames",
            "coordinate_system": coordinate_system,
        },
    )


def _find_recording(root: Path, *, subject: str, session: str | None, task: str, run: int | None):
    import mne_bids

    _check_dataset_description(root)
    bids_path = mne_bids.BIDSPath(root=root, subject=subject, session=session, task=task, run=run, datatype="eeg", suffix="eeg")
    matches = [p for p in bids_path.match() if p.extension in (".vhdr", ".edf", ".bdf", ".set", ".fif")]
    if not matches:
        raise AdapterError(
            f"no EEG recording for subject {subject!r}, session {session!r}, task {task!r}, run {run!r}",
            file=root,
            field="subject/session/task",
            fix="check the entities against the sub-*/[ses-*/]eeg/ file names",
        )
    return matches[0]


def _check_dataset_description(root: Path) -> None:
    """Refuse a folder without a readable ``dataset_description.json`` holding BIDS's required fields."""
    path = root / "dataset_description.json"
    if not path.is_file():
        raise AdapterError("this is not a BIDS dataset (no dataset_description.json)", file=root, field="bids_root",
                           fix="point bids_root at the folder that holds dataset_description.json")
    fix = 'write it as a JSON object with at least "Name" and "BIDSVersion" (e.g. "1.9.0")'
    description = read_json_object(path, error=AdapterError, fix=fix)
    for key in ("Name", "BIDSVersion"):
        if not isinstance(description.get(key), str) or not description[key].strip():
            raise AdapterError(f"the required field {key!r} is missing or not a text", file=path, field=key, fix=fix)


def _read_bids_raw(bids_path) -> mne.io.BaseRaw:
    import mne_bids

    try:
        return mne_bids.read_raw_bids(bids_path, verbose="error")
    except Exception as error:  # mne and mne-bids raise many types for unreadable files
        raise AdapterError(
            f"the recording cannot be read ({type(error).__name__}: {error})",
            file=bids_path.fpath,
            field="eeg",
            fix="check that the file is complete and that its sidecars match it",
        ) from error


def _read_events(bids_path, spec: EEGSpec) -> pd.DataFrame:
    path = bids_path.copy().update(suffix="events", extension=".tsv").fpath
    if not Path(path).is_file():
        raise AdapterError("the recording has no events.tsv, so there are no frames to pair with the EEG",
                           file=path, field="events", fix="convert the recording with its frame times (eeg_to_bids)")
    events = pd.read_csv(path, sep="\t", encoding="utf-8-sig", keep_default_na=False, na_values={"onset": ["n/a"]})
    events = events[np.isfinite(pd.to_numeric(events.get("onset"), errors="coerce"))] if "onset" in events else events.iloc[:0]
    if spec.event_type is not None:
        types = events["trial_type"].astype(str) if "trial_type" in events else pd.Series("n/a", index=events.index)
        if not (types == spec.event_type).any():
            available = sorted(set(types)) or ["none"]
            raise AdapterError(
                f"no events of type {spec.event_type!r}; the events here are of types {available}",
                file=path,
                field="trial_type",
                fix="set spec.event_type to one of them, or None to use every event",
            )
        events = events[types == spec.event_type]
    if events.empty:
        raise AdapterError("events.tsv has no events", file=path, field="events", fix="convert the recording with its frame times")
    events = events.astype({"onset": float}).sort_values("onset", kind="stable").reset_index(drop=True)
    events["stim_file"] = events["stim_file"].astype(str) if "stim_file" in events else "n/a"
    events["trial_type"] = events["trial_type"].astype(str) if "trial_type" in events else "n/a"
    return events


def _pick_channels(raw: mne.io.BaseRaw, spec: EEGSpec, source: Path) -> tuple[list[str], list[str] | None]:
    """The kept channels and the channels whose mean is the reference (None: no re-referencing)."""
    if spec.channels is None:
        types = raw.get_channel_types()
        channels = [name for name, kind in zip(raw.ch_names, types, strict=True) if kind == "eeg"]
        if not channels:
            raise AdapterError("the recording has no EEG channels", file=source, field="channels",
                               fix="name the channels to use in spec.channels")
    else:
        channels = list(spec.channels)
    wanted = channels + (list(spec.reference) if isinstance(spec.reference, tuple) else [])
    missing = [name for name in wanted if name not in raw.ch_names]
    if missing:
        raise AdapterError(
            f"the spec names channels the recording lacks: {missing}",
            file=source,
            field="spec.channels" if set(missing) & set(channels) else "spec.reference",
            fix=f"choose among {raw.ch_names}",
        )
    if spec.reference is None:
        return channels, None
    if spec.reference == "average":
        good = [name for name in channels if name not in raw.info["bads"]]
        return channels, good or channels
    return channels, list(spec.reference)


def _window_samples(window: tuple[float, float], sfreq: float) -> tuple[int, int]:
    start = int(round(window[0] * sfreq))
    return start, max(int(round(window[1] * sfreq)), start + 1)


def _check_inside(first: np.ndarray, last: np.ndarray, n_times: int, source: Path, events: pd.DataFrame) -> None:
    outside = (first < 0) | (last > n_times)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise AdapterError(
            f"{int(outside.sum())} events have feature windows outside the recording, the first at onset "
            f"{events['onset'].iloc[index]:.3f} s",
            file=source,
            field="events.onset / spec.window",
            fix="shorten spec.window or drop the events at the recording's edges",
        )


def _sample_file(source: Path) -> Path:
    """The file that holds the samples (the ``.eeg`` of a BrainVision header, else the file itself)."""
    return source.with_suffix(".eeg") if source.suffix == ".vhdr" and source.with_suffix(".eeg").exists() else source


@functools.lru_cache(maxsize=8)
def _open_raw(path: str, version: tuple[int, int]) -> mne.io.BaseRaw:
    """Open a recording without reading its samples; cached per file path and version."""
    import mne

    return mne.io.read_raw(path, preload=False, verbose="error")


def _chunk_features(
    file: tuple[str, tuple[int, int]],
    channels: list[str],
    reference: list[str] | None,
    first: int,
    last: int,
    onsets: np.ndarray,
    window: tuple[int, int],
    sfreq: float,
    spec: EEGSpec,
) -> np.ndarray:
    """Read samples ``first:last``, re-reference, filter, and reduce each event's window."""
    names = list(dict.fromkeys(channels + (reference or [])))
    path = file[0]
    try:
        data = _open_raw(*file).get_data(picks=names, start=first, stop=last)
    except Exception as error:
        raise AdapterError(
            f"samples {first} to {last} cannot be read ({type(error).__name__}: {error})",
            file=path,
            field="eeg",
            fix="the file is truncated or corrupt; convert the recording again",
        ) from error
    data *= 1e6  # microvolts
    if reference is not None:
        data -= data[[names.index(name) for name in reference]].mean(axis=0, keepdims=True)
    data = data[: len(channels)]
    data = _band_pass(data, sfreq, spec)
    if spec.feature == "power":
        data = data**2
    cumulative = np.concatenate([np.zeros((data.shape[0], 1)), np.cumsum(data, axis=1, dtype=np.float64)], axis=1)
    starts = onsets - first + window[0]
    stops = onsets - first + window[1]
    return ((cumulative[:, stops] - cumulative[:, starts]) / (stops - starts)).T.astype(np.float32)


def _band_pass(data: np.ndarray, sfreq: float, spec: EEGSpec) -> np.ndarray:
    from scipy import signal

    nyquist = sfreq / 2
    low = spec.l_freq if spec.l_freq is not None and spec.l_freq < nyquist else None
    high = spec.h_freq if spec.h_freq is not None and spec.h_freq < nyquist else None
    if low is None and high is None:
        return data
    if low is not None and high is not None:
        sos = signal.butter(spec.filter_order, [low, high], btype="bandpass", fs=sfreq, output="sos")
    elif low is not None:
        sos = signal.butter(spec.filter_order, low, btype="highpass", fs=sfreq, output="sos")
    else:
        sos = signal.butter(spec.filter_order, high, btype="lowpass", fs=sfreq, output="sos")
    return signal.sosfiltfilt(sos, data, axis=1, padlen=min(data.shape[1] - 1, 3 * (2 * len(sos) + 1)))


_METRES = {"m": 1.0, "cm": 0.01, "mm": 0.001}


def _electrode_positions(bids_path) -> tuple[pd.DataFrame, str]:
    """Electrode positions (m) from the recording's ``electrodes.tsv``, and their coordinate system."""
    prefix = f"sub-{bids_path.subject}" + (f"_ses-{bids_path.session}" if bids_path.session else "")
    tables = sorted(Path(bids_path.fpath).parent.glob(f"{prefix}*_electrodes.tsv"))
    if not tables:
        return pd.DataFrame(columns=["x", "y", "z"], dtype=float), "n/a"
    coordsystem = tables[0].with_name(tables[0].name.replace("_electrodes.tsv", "_coordsystem.json"))
    system = json.loads(coordsystem.read_text(encoding="utf-8-sig")) if coordsystem.is_file() else {}
    scale = _METRES.get(system.get("EEGCoordinateUnits", "m"), 1.0)
    table = pd.read_csv(tables[0], sep="\t", encoding="utf-8-sig", na_values=["n/a"]).set_index("name")
    return table[["x", "y", "z"]].astype(float) * scale, system.get("EEGCoordinateSystem", "n/a")


def _coords(
    raw: mne.io.BaseRaw, channels: list[str], events: pd.DataFrame, session: str | None, positions: pd.DataFrame
) -> dict[str, Any]:
    index = [raw.ch_names.index(name) for name in channels]
    locations = positions.reindex(channels).to_numpy(float)
    types = raw.get_channel_types()
    return {
        "frame": np.arange(len(events)),
        "onset": ("frame", events["onset"].to_numpy(float)),
        "stim_file": ("frame", events["stim_file"].to_numpy(str)),
        "trial_type": ("frame", events["trial_type"].to_numpy(str)),
        "channel": channels,
        "channel_type": ("channel", [types[i] for i in index]),
        "x": ("channel", locations[:, 0]),
        "y": ("channel", locations[:, 1]),
        "z": ("channel", locations[:, 2]),
        "bad": ("channel", [name in raw.info["bads"] for name in channels]),
        "session": "" if session is None else str(session),
    }
