"""BIDS EEG -> one lazy ``xarray.DataArray`` of event-locked EEG features, one row per event.

For each selected event of ``events.tsv`` (the video frames of our driving datasets, or the
trials, stimuli or trigger codes of any BIDS EEG dataset, selected by ``trial_type`` or any other
column), the adapter takes the EEG in a window around the event's onset, re-referenced,
band-passed and baseline-corrected as the :class:`EEGSpec` says, and reduces it to one number per
channel (dims ``(frame, channel)``), or to one per channel and time bin (``bin_width``; dims
``(frame, time, channel)``): the mean (an evoked-response amplitude) or the mean power. The
``frame`` dimension is one row per selected event, video frame or not. The work is split into
chunks of ``spec.chunk_s`` seconds of recording, each a ``dask.delayed`` task that reads only its
own samples (plus ``spec.pad_s`` on each side so the zero-phase filter has no edge effects), so a
3-hour, 64-channel, 2048 Hz session never sits whole in memory.

TOML layout of an :class:`EEGSpec` (every key optional; TOML has no null, so write ``"none"``
where the Python spec says ``None``)::

    event_column = "trial_type"          # events.tsv column that selects the events
    event_values = ["Stimulus/S253"]     # keep rows whose column holds one of these; "none": every event
    channels = "none"                    # or ["Cz", "Pz"]
    reference = "average"                # "average", ["M1", "M2"] or "none"
    l_freq = 1.0                         # Hz, or "none"
    h_freq = 40.0
    filter_order = 4
    window = [-0.1, 0.3]                 # s around the onset: pre-event (negative) and post-event part
    baseline = [-0.1, 0.0]               # s; its mean per channel is subtracted first; or "none"
    bin_width = 0.05                     # s; "none": one feature over the whole window
    feature = "mean"                     # or "power"
    pad_s = 2.0
    chunk_s = 60.0
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from b2m_neuro._util.files import read_json_object, read_toml, sha256
from b2m_neuro.errors import AdapterError

if TYPE_CHECKING:
    import mne

__all__ = ["EEGSpec", "load_eeg"]

FEATURES = ("mean", "power")
_OPTIONAL = ("event_values", "channels", "reference", "l_freq", "h_freq", "baseline", "bin_width")  # may be None
_EVENT_COLUMNS_AS_IS = ("onset", "sample")  # events.tsv columns that do not become coords
_RESERVED_COORDS = ("frame", "time", "channel", "channel_type", "x", "y", "z", "bad", "session")


@dataclass(frozen=True)
class EEGSpec:
    """How EEG becomes one feature vector (or one per time bin) per event.

    Parameters
    ----------
    event_column
        The ``events.tsv`` column that selects the events (``trial_type``, ``value``, or any
        other column the dataset has).
    event_values
        Keep the events whose ``event_column`` holds one of these values, compared as text
        as written in ``events.tsv`` (``"frame"``, ``"Stimulus/S253"``, ``"128"``); a single
        value may be given as a string; ``None`` keeps every event.
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
        Start and end (s, relative to the event onset) of the samples reduced to the feature; a
        negative start reaches before the event (like a spike spec's pre window), the end after
        it (the post window).
    baseline
        Start and end (s, relative to the onset) of a window, usually before the event, whose
        mean signal per channel is subtracted from each event's samples before the feature (as
        in ERP analysis); ``None``: no baseline correction.
    bin_width
        Seconds per time bin: the window is cut into equal bins and the output gets a ``time``
        dimension (bin centres); ``None``: one feature over the whole window.
    feature
        ``"mean"``: the mean signal in the window (microvolts); ``"power"``: the mean squared
        signal (microvolts squared).
    pad_s
        Extra samples (s) read on each side of a chunk so that filter edges fall outside it.
    chunk_s
        Seconds of recording per lazy task.

    Examples
    --------
    >>> spec = EEGSpec(event_values="show_stimulus", l_freq=None, h_freq=30.0, window=(0.0, 0.2))
    >>> EEGSpec.from_json(spec.to_json()) == spec, spec.event_values
    (True, ('show_stimulus',))
    >>> EEGSpec.from_dict({"window": [-0.1, 0.3], "baseline": [-0.1, 0.0], "bin_width": 0.1, "l_freq": "none"}).n_bins
    4
    """

    event_column: str = "trial_type"
    event_values: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    reference: str | tuple[str, ...] | None = "average"
    l_freq: float | None = 1.0
    h_freq: float | None = 40.0
    filter_order: int = 4
    window: tuple[float, float] = (0.0, 0.1)
    baseline: tuple[float, float] | None = None
    bin_width: float | None = None
    feature: str = "mean"
    pad_s: float = 2.0
    chunk_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("channels", "window", "baseline"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.reference, list):
            object.__setattr__(self, "reference", tuple(self.reference))
        if self.event_values is not None:
            values = (self.event_values,) if isinstance(self.event_values, str | int | float) else self.event_values
            object.__setattr__(self, "event_values", tuple(str(value) for value in values))
        self._check()

    def _check(self) -> None:
        if not isinstance(self.event_column, str) or not self.event_column:
            _bad_spec("event_column", f"event_column must be a column name, got {self.event_column!r}",
                      "name a column of events.tsv, e.g. 'trial_type'")  # fmt: skip
        if self.event_values is not None and not self.event_values:
            _bad_spec("event_values", "event_values is empty, so no event would be kept", "name values, or None for every event")
        for name in ("window", "baseline"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or not value[1] > value[0]):
                _bad_spec(name, f"the {name} {value} does not end after it starts", "pass (start, stop) with stop > start")
        if self.bin_width is not None:
            n_bins = (self.window[1] - self.window[0]) / self.bin_width if self.bin_width > 0 else 0.0
            if not self.bin_width > 0 or abs(n_bins - round(n_bins)) > 1e-6 or round(n_bins) < 1:
                _bad_spec("bin_width", f"the window {self.window} is not a whole number of {self.bin_width} s bins",
                          "choose a positive bin width that divides the window length")  # fmt: skip
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

    @property
    def n_bins(self) -> int:
        """Time bins per event (1 without ``bin_width``)."""
        return 1 if self.bin_width is None else round((self.window[1] - self.window[0]) / self.bin_width)

    def to_json(self) -> str:
        """The spec as a JSON string (stored in the adapter output's ``attrs["spec"]``)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EEGSpec:
        """Rebuild a spec written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, file: str | os.PathLike | None = None) -> EEGSpec:
        """Build a spec from plain values, as in the TOML file (``"none"`` stands for None)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        try:
            if unknown:
                _bad_spec(unknown[0], f"unknown EEG spec fields {unknown}", f"use only {sorted(known)}")
            values = {key: None if key in _OPTIONAL and value == "none" else value for key, value in values.items()}
            return cls(**values)
        except AdapterError as error:
            raise AdapterError(error.problem, file=file, field=error.field, fix=error.fix) from None
        except TypeError as error:  # a value of the wrong kind, e.g. window = 3
            raise AdapterError(f"a spec value has the wrong type ({error})", file=file, field="spec",
                               fix="see the TOML layout in the EEGSpec documentation") from None  # fmt: skip

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> EEGSpec:
        """Read a spec from a TOML file (layout in this module's docstring)."""
        path = Path(path)
        return cls.from_dict(read_toml(path, error=AdapterError, what="EEG spec"), file=path)

    @classmethod
    def resolve(cls, spec: EEGSpec | str | os.PathLike | None) -> EEGSpec:
        """A spec from a spec, a TOML path, or None (the defaults: every event, 1-40 Hz, 0-100 ms mean)."""
        if spec is None:
            return cls()
        return spec if isinstance(spec, EEGSpec) else cls.from_toml(spec)


def _bad_spec(field: str, problem: str, fix: str) -> None:
    raise AdapterError(problem, field=f"spec.{field}", fix=fix)


def load_eeg(
    bids_root: str | os.PathLike,
    *,
    subject: str,
    task: str,
    session: str | None = None,
    run: int | None = None,
    acquisition: str | None = None,
    spec: EEGSpec | str | os.PathLike | None = None,
) -> xr.DataArray:
    """Event-locked EEG features of one BIDS EEG recording, as a lazy (dask) DataArray.

    Parameters
    ----------
    bids_root
        Root of a BIDS dataset with EEG (ours from :func:`b2m_neuro.convert.eeg_to_bids`, or any
        other, e.g. from OpenNeuro).
    subject, task, session, run, acquisition
        BIDS entities of the recording; they must name one recording (an ambiguous set, such as
        two ``acq-`` of the same run, is refused, naming the files).
    spec
        An :class:`EEGSpec` or a TOML file of one: events, channels, reference, filter,
        windows, bins and feature; default ``EEGSpec()`` (every event, every EEG channel,
        average reference, 1-40 Hz, mean over 0-100 ms).

    Returns
    -------
    xarray.DataArray
        float32, dims ``("frame", "channel")`` (one row per selected event), or
        ``("frame", "time", "channel")`` with ``spec.bin_width``; dask-backed (call
        ``.compute()`` or ``.values``). Coords along ``frame``: ``onset`` (s), ``stim_file``
        (``"n/a"`` when none), ``trial_type`` and every other ``events.tsv`` column (numbers where
        the column holds numbers; a name taken by another coord gets the prefix ``event_``);
        along ``time``: bin centres (s from the onset); along ``channel``: ``channel_type``,
        ``x``, ``y``, ``z`` (m, NaN when unknown), ``bad``; scalar ``session``. attrs: ``spec``
        (JSON), ``source_file``, ``source_sha256``, ``subject``, ``session``, ``task``, ``sfreq``,
        ``units``.

    Raises
    ------
    AdapterError
        No such recording, an unreadable or corrupt file, sidecars that disagree with the
        recording (channel count in ``channels.tsv``, ``SamplingFrequency`` in ``*_eeg.json``),
        no events, a selection that matches no event, channels named by the spec that the
        recording lacks, events whose windows leave the recording, bins shorter than a sample.

    Examples
    --------
    >>> eeg = load_eeg("tests/data/tiny_bids", subject="01", session="eeg", task="rest",
    ...                spec=EEGSpec(l_freq=None))  # doctest: +SKIP
    >>> eeg.dims, eeg.sizes["frame"]  # doctest: +SKIP
    (('frame', 'channel'), 2)
    """
    import dask
    import dask.array as da

    spec = EEGSpec.resolve(spec)
    bids_path = _find_recording(Path(bids_root), subject=subject, session=session, task=task, run=run,
                                acquisition=acquisition)
    info_raw = _read_bids_raw(bids_path)
    source = Path(bids_path.fpath)
    _check_sidecars(bids_path, info_raw)
    events = _read_events(bids_path, spec)
    channels, reference = _pick_channels(info_raw, spec, source)
    sfreq = float(info_raw.info["sfreq"])
    onsets = np.round(events["onset"].to_numpy(float) * sfreq).astype(np.int64)
    edges = _bin_edges(spec, sfreq, source)
    baseline = None if spec.baseline is None else _window_samples(spec.baseline, sfreq)
    reach = (min(edges[0], baseline[0] if baseline else edges[0]), max(edges[-1], baseline[1] if baseline else edges[-1]))
    _check_inside(onsets + reach[0], onsets + reach[1], info_raw.n_times, source, events)

    blocks = []
    chunk_samples = max(int(spec.chunk_s * sfreq), 1)
    pad = int(spec.pad_s * sfreq)
    group = onsets // chunk_samples
    stat = Path(_sample_file(source)).stat()
    version = (stat.st_mtime_ns, stat.st_size)  # a rewritten file is opened afresh
    for value in np.unique(group):
        members = onsets[group == value]
        first, last = int(members.min() + reach[0] - pad), int(members.max() + reach[1] + pad)
        task_ = dask.delayed(_chunk_features, pure=True)(
            (str(source), version), channels, reference, max(first, 0), min(last, info_raw.n_times),
            members, edges, baseline, sfreq, spec,
        )
        shape = (members.size, len(edges) - 1, len(channels))
        blocks.append(da.from_delayed(task_, shape=shape, dtype=np.float32))
    data = da.concatenate(blocks, axis=0)
    if spec.bin_width is None:
        data = data[:, 0, :]
    positions, coordinate_system = _electrode_positions(bids_path)
    return xr.DataArray(
        data,
        dims=("frame", "channel") if spec.bin_width is None else ("frame", "time", "channel"),
        coords=_coords(info_raw, channels, events, session, positions, spec, edges / sfreq),
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


def _find_recording(root: Path, *, subject: str, session: str | None, task: str, run: int | None,
                    acquisition: str | None):
    import mne_bids

    _check_dataset_description(root)
    bids_path = mne_bids.BIDSPath(root=root, subject=subject, session=session, task=task, run=run,
                                  acquisition=acquisition, datatype="eeg", suffix="eeg")
    matches = [p for p in bids_path.match() if p.extension in (".vhdr", ".edf", ".bdf", ".set", ".fif")]
    entities = f"subject {subject!r}, session {session!r}, task {task!r}, run {run!r}, acquisition {acquisition!r}"
    if not matches:
        raise AdapterError(f"no EEG recording for {entities}", file=root, field="subject/session/task",
                           fix="check the entities against the sub-*/[ses-*/]eeg/ file names")
    if len(matches) > 1:
        raise AdapterError(f"{len(matches)} EEG recordings match {entities}: {', '.join(p.basename for p in matches)}",
                           file=root, field="run/acquisition", fix="give the run= / acquisition= of one of them")
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


def _check_sidecars(bids_path, raw: mne.io.BaseRaw) -> None:
    """Refuse sidecars that disagree with the recording: channel count, sampling frequency."""
    channels_tsv = Path(bids_path.copy().update(suffix="channels", extension=".tsv").fpath)
    if channels_tsv.is_file():
        listed = len(pd.read_csv(channels_tsv, sep="\t", encoding="utf-8-sig", dtype=str, keep_default_na=False))
        if listed != raw.info["nchan"]:
            raise AdapterError(
                f"channels.tsv lists {listed} channels but the recording {Path(bids_path.fpath).name} holds "
                f"{raw.info['nchan']}",
                file=channels_tsv,
                field="channels.tsv rows",
                fix="list every channel of the recording in channels.tsv, one row each, in the file's order",
            )
    sidecar = Path(bids_path.copy().update(extension=".json").fpath)
    if sidecar.is_file():
        stated = read_json_object(sidecar, error=AdapterError, fix="write the sidecar as a JSON object").get("SamplingFrequency")
        sfreq = float(raw.info["sfreq"])
        if stated is not None and not (isinstance(stated, int | float) and math.isclose(stated, sfreq, rel_tol=1e-6)):
            raise AdapterError(
                f"SamplingFrequency is {stated!r} Hz but the recording {Path(bids_path.fpath).name} is sampled at "
                f"{sfreq:g} Hz",
                file=sidecar,
                field="SamplingFrequency",
                fix=f"set SamplingFrequency to {sfreq:g} (the recording's rate) in the sidecar",
            )


def _read_events(bids_path, spec: EEGSpec) -> pd.DataFrame:
    """The selected rows of ``events.tsv`` (as text, ``onset`` as float), sorted by onset."""
    path = bids_path.copy().update(suffix="events", extension=".tsv").fpath
    if not Path(path).is_file():
        raise AdapterError(
            "the recording has no events.tsv, so there are no events to cut windows around",
            file=path,
            field="events",
            fix="write an events.tsv (onset, duration, trial_type) beside the recording, or convert the recording "
            "with its events (b2m-neuro convert eeg --stim-channel / --events)",
        )
    events = pd.read_csv(path, sep="\t", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    onset = pd.to_numeric(events["onset"], errors="coerce") if "onset" in events else pd.Series(dtype=float)
    events = events[np.isfinite(onset)].assign(onset=onset[np.isfinite(onset)])
    if events.empty:
        raise AdapterError("events.tsv has no events with a numeric onset", file=path, field="onset",
                           fix="give each event's onset in seconds from the recording's first sample")  # fmt: skip
    if spec.event_values is not None:
        if spec.event_column not in events:
            raise AdapterError(
                f"events.tsv has no column {spec.event_column!r}; its columns are {list(events.columns)}",
                file=path,
                field="spec.event_column",
                fix="set spec.event_column to one of them",
            )
        present = events[spec.event_column]
        selected = present.isin(spec.event_values)
        if not selected.any():
            available = sorted(set(present))
            shown = available[:20] + (["..."] if len(available) > 20 else [])
            raise AdapterError(
                f"no event has {spec.event_column} in {list(spec.event_values)}; the events here have {shown}",
                file=path,
                field=spec.event_column,
                fix="set spec.event_values to some of them, or None to use every event",
            )
        events = events[selected]
    events = events.sort_values("onset", kind="stable").reset_index(drop=True)
    for column in ("stim_file", "trial_type"):
        if column not in events:
            events[column] = "n/a"
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


def _bin_edges(spec: EEGSpec, sfreq: float, source: Path) -> np.ndarray:
    """Sample offsets (from the onset) of the window's bin edges: ``n_bins + 1`` increasing integers."""
    if spec.bin_width is None:
        return np.array(_window_samples(spec.window, sfreq))
    edges = np.round(np.linspace(*spec.window, spec.n_bins + 1) * sfreq).astype(np.int64)
    if np.any(np.diff(edges) < 1):
        raise AdapterError(f"bins of {spec.bin_width} s are shorter than one sample at {sfreq:g} Hz", file=source,
                           field="spec.bin_width", fix=f"use a bin_width of at least {1 / sfreq:g} s")  # fmt: skip
    return edges


def _window_samples(window: tuple[float, float], sfreq: float) -> tuple[int, int]:
    start = int(round(window[0] * sfreq))
    return start, max(int(round(window[1] * sfreq)), start + 1)


def _check_inside(first: np.ndarray, last: np.ndarray, n_times: int, source: Path, events: pd.DataFrame) -> None:
    outside = (first < 0) | (last > n_times)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise AdapterError(
            f"{int(outside.sum())} events have windows outside the recording, the first at onset "
            f"{events['onset'].iloc[index]:.3f} s",
            file=source,
            field="events.onset / spec.window",
            fix="shorten spec.window (and spec.baseline) or drop the events at the recording's edges",
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
    edges: np.ndarray,
    baseline: tuple[int, int] | None,
    sfreq: float,
    spec: EEGSpec,
) -> np.ndarray:
    """Read samples ``first:last``, re-reference, filter, and reduce each event's bins: (events, bins, channels)."""
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
    data = _band_pass(data[: len(channels)], sfreq, spec)
    centre = data.mean(axis=1, keepdims=True)
    data -= centre  # running sums of a large DC offset (BioSemi: ~0.3 V) would cost the features their precision
    rows = onsets - first
    means = _bin_means(data, rows, edges)  # (channels, events, bins)
    # what to subtract from each event's centred samples: its baseline level, or minus the centre
    offset = -centre[:, :, None] if baseline is None else _bin_means(data, rows, np.array(baseline))
    if spec.feature == "mean":
        features = means - offset
    else:  # mean of (x - offset)^2 = mean(x^2) - 2 offset mean(x) + offset^2
        features = _bin_means(data**2, rows, edges) - 2 * offset * means + offset**2
    return np.ascontiguousarray(np.transpose(features, (1, 2, 0)), dtype=np.float32)


def _bin_means(data: np.ndarray, rows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``data`` (channels x samples) between consecutive ``edges`` after each row: (channels, rows, bins)."""
    cumulative = np.concatenate([np.zeros((data.shape[0], 1)), np.cumsum(data, axis=1, dtype=np.float64)], axis=1)
    sums = cumulative[:, rows[:, None] + edges[None, :]]
    return np.diff(sums, axis=2) / np.diff(edges)


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
    raw: mne.io.BaseRaw,
    channels: list[str],
    events: pd.DataFrame,
    session: str | None,
    positions: pd.DataFrame,
    spec: EEGSpec,
    edges_s: np.ndarray,
) -> dict[str, Any]:
    index = [raw.ch_names.index(name) for name in channels]
    locations = positions.reindex(channels).to_numpy(float)
    types = raw.get_channel_types()
    coords: dict[str, Any] = {"frame": np.arange(len(events)), "onset": ("frame", events["onset"].to_numpy(float))}
    for column in events.columns.drop(list(_EVENT_COLUMNS_AS_IS), errors="ignore"):
        name = f"event_{column}" if column in _RESERVED_COORDS else column
        text = column in ("trial_type", "stim_file")
        coords[name] = ("frame", events[column].to_numpy(str) if text else _column_values(events[column]))
    if spec.bin_width is not None:
        centres = (edges_s[:-1] + edges_s[1:]) / 2
        coords["time"] = ("time", centres, {"units": "s", "description": "bin centre, seconds from the event onset"})
    coords.update({
        "channel": channels,
        "channel_type": ("channel", [types[i] for i in index]),
        "x": ("channel", locations[:, 0]),
        "y": ("channel", locations[:, 1]),
        "z": ("channel", locations[:, 2]),
        "bad": ("channel", [name in raw.info["bads"] for name in channels]),
        "session": "" if session is None else str(session),
    })  # fmt: skip
    return coords


def _column_values(column: pd.Series) -> np.ndarray:
    """An events.tsv column as numbers (``n/a`` -> NaN) when every other entry is one, else as text."""
    numbers = pd.to_numeric(column.replace("n/a", None), errors="coerce")
    given = column != "n/a"
    if given.any() and numbers[given].notna().all():
        return numbers.to_numpy(float) if numbers.isna().any() else numbers.to_numpy()
    return column.to_numpy(str)
