"""NWB spike trains -> a ``(trial, time, unit)`` firing-rate array, following a :class:`TeacherSpec`.

The hot path is vectorized. All bin edges of all trials form one ``(trial, edge)`` array; each
spike finds its bin with one search over the flattened edges (:class:`EdgeSearch`, equal to
``np.searchsorted``), and one weighted ``np.bincount`` turns the spikes of a chunk of units into
rates (Hz). Trials whose windows overlap
are split into a few groups of non-overlapping trials (as many as the deepest overlap), so the
flattened edges of each group are sorted. The causal filter is a banded matrix product along time
over all trials and units of the chunk at once. Spike times are read from the units table's ragged
arrays (``spike_times`` + ``spike_times_index``) one chunk of units at a time, so memory stays
bounded by the output plus one chunk.

Bins are closed on the left and open on the right: a spike at exactly a bin edge belongs to the bin
that starts there, and a spike at exactly the end of a window is not counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from b2m_neuro._util.files import sha256
from b2m_neuro._util.progress import track
from b2m_neuro.adapters.spec import TeacherSpec
from b2m_neuro.adapters.trial_table import TrialTable, as_text
from b2m_neuro.errors import AdapterError
from b2m_neuro.sources import SourceFile

__all__ = ["load_spikes", "TrialBins", "spike_rates", "causal_filter"]

# Spike times beyond this many "seconds" (~28 hours), or this many times past the end of the
# intervals table, are taken to be in milliseconds (or samples).
_MAX_PLAUSIBLE_SECONDS = 1e5
_MAX_RATIO_TO_INTERVALS = 500.0
_DEFAULT_CHUNK_BYTES = 16 << 20  # small enough for the allocator to reuse the same memory chunk after chunk
_TIME_DESCRIPTIONS = {
    "seconds": "bin centre, seconds from the alignment event",
    "pre_seconds_then_rt_phase": "bin centre: seconds from the event in the pre phase, then fraction of the "
    "reaction time (0 = event, 1 = response) in the post phase",
    "rt_phase": "bin centre as a fraction of the reaction time (0 = event, 1 = response)",
}


# ===================================================================== vectorized core (numpy only)
@dataclass(frozen=True)
class TrialBins:
    """The bins of every trial, ready for binning spikes of any unit.

    Attributes
    ----------
    edges
        ``(trial, edge)`` absolute bin edges (s), each row non-decreasing.
    edge_bin
        ``(edge,)`` output time index of the bin starting at each edge, -1 for edges that start no
        bin (a window's last edge, the gap between the pre and post windows).
    inv_width
        ``(trial, time)`` 1 / bin width (1/s) of each output bin: counts times this are rates in Hz.
    slot_weight
        ``(trial * time + 1,)`` float64: ``inv_width`` flattened, then 0 for the "no bin" slot.
    groups
        ``(rows, flat_edges)`` pairs: trials whose windows do not overlap, and their edges
        flattened into one sorted vector.
    searches
        Per group, an :class:`EdgeSearch` over its flattened edges.
    slots
        Per group, ``(len(flat_edges) + 1,)`` int32: the flat ``trial * n_time + time`` index of
        the bin starting at each flattened edge, or ``n_trials * n_time`` (a "no bin" slot) for
        edges that start no bin; the extra last entry is that slot too, for spikes before the
        first edge (a search position of -1).
    n_time
        Number of binned time points per trial.
    """

    edges: np.ndarray
    edge_bin: np.ndarray
    inv_width: np.ndarray
    slot_weight: np.ndarray
    groups: tuple[tuple[np.ndarray, np.ndarray], ...]
    searches: tuple[EdgeSearch, ...]
    slots: tuple[np.ndarray, ...]
    n_time: int

    @classmethod
    def build(cls, edges: np.ndarray, edge_bin: np.ndarray) -> TrialBins:
        """Group the trials and precompute widths; ``edges`` rows must be non-decreasing."""
        edges = np.ascontiguousarray(edges, dtype=np.float64)
        widths = np.diff(edges, axis=1)[:, edge_bin[:-1] >= 0]
        inv_width = np.divide(1.0, widths, out=np.zeros_like(widths), where=widths > 0)
        edge_bin = np.asarray(edge_bin)
        n_time = int(edge_bin.max()) + 1
        groups = tuple((rows, edges[rows].ravel()) for rows in _non_overlapping_groups(edges[:, 0], edges[:, -1]))
        no_bin = len(edges) * n_time
        slots = tuple(
            np.append(np.where(edge_bin >= 0, rows[:, None] * n_time + edge_bin, no_bin).ravel(), no_bin).astype(np.int32)
            for rows, _ in groups
        )
        searches = tuple(EdgeSearch(flat_edges) for _, flat_edges in groups)
        return cls(edges, edge_bin, inv_width, np.append(inv_width.ravel(), 0.0), groups, searches, slots, n_time)

    @property
    def n_trials(self) -> int:
        return self.edges.shape[0]


class EdgeSearch:
    """``np.searchsorted(edges, t, side="right") - 1`` for many ``t`` (the last edge at or before
    each time), exactly, about twice as fast on spike trains.

    A table over equal time buckets (about one edge apart, at most ``max_buckets``) gives each
    time's last edge at or before its bucket's start; a few exact comparisons with the edges then
    step back or forward to the answer. NaN sorts after every edge, as in ``np.searchsorted``.
    """

    def __init__(self, edges: np.ndarray, *, max_buckets: int = 1 << 22) -> None:
        self.edges = np.append(edges, np.nan)  # edges[n] and edges[-1] are NaN: never at or before a time
        spacing = np.diff(edges)
        spacing = spacing[spacing > 0]
        span = float(edges[-1] - edges[0])
        width = max(float(np.median(spacing)) if len(spacing) else 1.0, span / max_buckets, np.finfo(float).tiny)
        self.start, self.inv_width = float(edges[0]), 1.0 / width
        self.n_buckets = int(span * self.inv_width) + 1
        bucket_starts = self.start + np.arange(self.n_buckets) / self.inv_width
        # lookup[b + 1]: the last edge at or before bucket b's start; lookup[0] = -1, before every edge
        self.lookup = np.concatenate([[-1], np.searchsorted(edges, bucket_starts, side="right") - 1]).astype(np.int32)

    def positions(self, times: np.ndarray) -> np.ndarray:
        """Index of the last edge <= each time (-1 before the first edge), int32."""
        bucket = (times - self.start) * self.inv_width
        np.clip(bucket, -1.0, self.n_buckets - 1.0, out=bucket)
        nan = np.isnan(bucket)
        bucket[nan] = -1.0
        position = self.lookup[bucket.astype(np.int64) + 1]
        position[nan] = len(self.edges) - 2
        back = np.flatnonzero(self.edges[position] > times)  # a bucket start rounded past its time
        while len(back):
            position[back] -= 1
            back = back[self.edges[position[back]] > times[back]]
        ahead = np.flatnonzero(self.edges[position + 1] <= times)  # edges between bucket start and time
        while len(ahead):
            position[ahead] += 1
            ahead = ahead[self.edges[position[ahead] + 1] <= times[ahead]]
        return position


def _non_overlapping_groups(starts: np.ndarray, stops: np.ndarray) -> list[np.ndarray]:
    """Split trials into the fewest round-robin groups (by start time) whose windows do not overlap.

    With trials sorted by start, trial ``i`` overlaps the next ``p_i - i - 1`` trials, where ``p_i``
    counts the trials starting before ``i`` stops; taking every ``k``-th trial with ``k`` the largest
    such ``p_i - i`` keeps each group free of overlaps.
    """
    order = np.argsort(starts, kind="stable")
    first_after = np.searchsorted(starts[order], stops[order], side="left")
    k = max(1, int(np.max(first_after - np.arange(len(order)), initial=1)))
    return [order[g::k] for g in range(min(k, len(order)))]


def bin_layout(spec: TeacherSpec) -> np.ndarray:
    """Binned time index per edge of a trial (``edge_bin`` of :class:`TrialBins`) for ``spec``:
    the history bins (``spec.n_history``, dropped after filtering), then the pre and post bins."""
    parts, first = [], 0
    for n_bins in (spec.n_history, spec.n_pre, spec.post.n_bins):
        if n_bins:
            parts += [first + np.arange(n_bins), [-1]]
            first += n_bins
    return np.concatenate(parts).astype(np.int64)


def trial_edges(spec: TeacherSpec, align_times: np.ndarray, reaction_times: np.ndarray | None = None) -> np.ndarray:
    """Absolute bin edges ``(trial, edge)``: history edges (bins as wide as the first window's,
    ending where it starts), pre edges, then post edges (scaled by reaction time)."""
    align_times = np.asarray(align_times, dtype=np.float64)[:, None]
    parts = []
    if spec.n_history:
        first = spec.first_window
        parts.append(align_times + (first.start + first.bin_width * np.arange(-spec.n_history, 1))[None, :])
    if spec.pre is not None:
        parts.append(align_times + spec.pre.offsets()[None, :])
    if spec.post.kind == "fixed":
        parts.append(align_times + spec.post.offsets()[None, :])
    else:
        parts.append(align_times + np.asarray(reaction_times, dtype=np.float64)[:, None] * spec.post.phases()[None, :])
    return np.concatenate(parts, axis=1)


def chunk_rates(spikes: np.ndarray, labels: np.ndarray, n_units: int, bins: TrialBins) -> np.ndarray:
    """Firing rates (Hz, float32) ``(unit, trial, time)`` of the spikes of ``n_units`` units.

    ``spikes`` holds the spike times of all these units (any order), ``labels`` the unit (0 to
    ``n_units - 1``) of each spike. Each spike's bin is one search in a group's sorted edges
    (:class:`EdgeSearch`) and one look-up in its slots; spikes outside every window (NaN included) land in each unit's
    "no bin" slot (weight 0), so no spike needs masking. One weighted ``bincount`` (each spike
    weighs 1 / its bin's width) gives the rates: the work per bin is one write, the rest is per
    spike, and spikes are far fewer than bins.
    """
    per_unit = bins.n_trials * bins.n_time + 1  # the bins, then the "no bin" slot
    offsets = labels * per_unit
    rates = None
    for search, slots in zip(bins.searches, bins.slots):
        slot = slots[search.positions(spikes)]
        group_rates = np.bincount(slot + offsets, weights=bins.slot_weight[slot], minlength=n_units * per_unit)
        rates = group_rates if rates is None else np.add(rates, group_rates, out=rates)
    out = np.empty((n_units, bins.n_trials, bins.n_time), dtype=np.float32)
    np.copyto(out, rates.reshape(n_units, per_unit)[:, :-1].reshape(out.shape), casting="same_kind")
    return out


def causal_filter(
    rates: np.ndarray, kernel: np.ndarray, *, skip: int = 0, block: int = 64, out: np.ndarray | None = None
) -> np.ndarray:
    """Causal FIR filter along the last axis: ``y[n] = sum_m kernel[m] * x[n - m]``, zeros before 0.

    One matrix product of all rows with the banded Toeplitz filter matrix (BLAS), taken in blocks
    of ``block`` output columns so that long windows do not pay for the whole square matrix. The
    first ``skip`` outputs (history that only feeds the later ones) are not computed: the result
    has ``rates.shape[-1] - skip`` columns. Written into ``out`` (that shape, ``rates``' dtype)
    when given.
    """
    n_time = rates.shape[-1]
    length = len(kernel)
    out = np.empty((*rates.shape[:-1], n_time - skip), dtype=rates.dtype) if out is None else out
    if length == 1:
        return np.multiply(rates[..., skip:], rates.dtype.type(kernel[0]), out=out)
    lag = np.arange(n_time)[None, :] - np.arange(n_time)[:, None]  # column - row
    toeplitz = np.where((lag >= 0) & (lag < length), kernel[np.clip(lag, 0, length - 1)], 0.0).astype(rates.dtype)
    block = max(block, length)
    for lo in range(skip, n_time, block):
        hi = min(lo + block, n_time)
        first = max(0, lo - length + 1)
        np.matmul(rates[..., first:hi], toeplitz[first:hi, lo:hi], out=out[..., lo - skip : hi - skip])
    return out


def spike_rates(
    spike_data: Any,
    spike_index: np.ndarray,
    units: Sequence[int],
    bins: TrialBins,
    kernel: np.ndarray,
    *,
    skip: int = 0,
    time_scale: float = 1.0,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    progress: bool = False,
    source: str = "spike data",
) -> np.ndarray:
    """Filtered firing rates ``(trial, time, unit)`` float32 (Hz) of the chosen units.

    The result is a transposed view of a unit-major array (each unit's ``(trial, time)`` block is
    contiguous, so each chunk is written in one piece); ``np.ascontiguousarray`` gives C order.

    Parameters
    ----------
    spike_data
        All spike times of all units, concatenated (NWB ``units.spike_times.data``): a numpy array
        or an h5py dataset, read one slice per chunk of units.
    spike_index
        End offset of each unit's spikes in ``spike_data`` (NWB ``units.spike_times_index.data``).
    units
        Positions (increasing) of the units to bin.
    bins
        The trials' bins (:class:`TrialBins`).
    kernel
        Causal filter weights (``[1.0]`` for none).
    skip
        Leading bins of each trial that are history: binned and filtered, then dropped (the
        result has ``bins.n_time - skip`` time points).
    time_scale
        Factor turning stored spike times into seconds (0.001 for milliseconds).
    chunk_bytes
        Working memory per chunk of units (besides the output).
    progress
        Show a progress bar over chunks.
    source
        The file the spikes come from, named in the warning about NaN or infinite spike times
        (which fall in no bin and are dropped).

    Warns
    -----
    UserWarning
        If some chosen units have NaN or infinite spike times, naming the units' rows.
    """
    spike_index = np.asarray(spike_index, dtype=np.int64)
    starts = np.concatenate([[0], spike_index[:-1]])
    units = np.asarray(units, dtype=np.int64)
    n_out = bins.n_time - skip
    out = np.empty((len(units), bins.n_trials, n_out), dtype=np.float32)  # unit-major: chunks are contiguous
    per_unit = bins.n_trials * bins.n_time * 12  # float64 weighted counts + float32 rates
    size = max(1, chunk_bytes // per_unit)
    chunks = [units[lo : lo + size] for lo in range(0, len(units), size)]
    done = 0
    non_finite = np.zeros(len(units), dtype=np.int64)
    for chunk in track(chunks, description="binning spikes", total=len(chunks), progress=progress):
        first, last = chunk[0], chunk[-1]
        spikes = np.asarray(spike_data[starts[first] : spike_index[last]], dtype=np.float64)
        if time_scale != 1.0:
            spikes = spikes * time_scale
        label_of_unit = np.full(last - first + 1, -1, dtype=np.int64)
        label_of_unit[chunk - first] = np.arange(len(chunk))
        labels = np.repeat(label_of_unit, spike_index[first : last + 1] - starts[first : last + 1])
        if len(chunk) < last - first + 1:  # drop the spikes of units between chosen ones
            spikes, labels = spikes[labels >= 0], labels[labels >= 0]
        non_finite[done : done + len(chunk)] = np.bincount(labels[~np.isfinite(spikes)], minlength=len(chunk))
        rates = chunk_rates(spikes, labels, len(chunk), bins)
        causal_filter(rates.reshape(-1, bins.n_time), kernel, skip=skip, out=out[done : done + len(chunk)].reshape(-1, n_out))
        done += len(chunk)
    _warn_non_finite(non_finite, units, source)
    return out.transpose(1, 2, 0)


def _warn_non_finite(counts: np.ndarray, units: np.ndarray, source: str) -> None:
    """Warn about dropped NaN or infinite spike times, ``counts`` per chosen unit."""
    bad = np.flatnonzero(counts)
    if len(bad) == 0:
        return
    shown = ", ".join(f"units[{units[i]}] ({counts[i]})" for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
    warnings.warn(
        f"{source}: units.spike_times: {int(counts.sum())} NaN or infinite spike times are dropped: {shown}. "
        "Fix: check the spike sorting export of these units",
        UserWarning,
        stacklevel=3,
    )


# ===================================================================== NWB front end
def load_spikes(
    nwb: str | os.PathLike | Any,
    spec: TeacherSpec | str | os.PathLike | None = None,
    *,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
    progress: bool = True,
) -> xr.DataArray:
    """Load one NWB session as firing rates ``(trial, time, unit)`` following a teacher spec.

    Parameters
    ----------
    nwb
        Path of an NWB file, an open ``pynwb.NWBFile``, or a file from :func:`b2m_neuro.fetch`
        (streamed ones are read over HTTP; ``source_file`` is then their URL).
    spec
        A :class:`TeacherSpec`, a preset name (``"paper"``), a TOML file path, or None for the
        ``"paper"`` preset.
    chunk_bytes
        Working memory for one chunk of units (the output comes on top).
    progress
        Show a progress bar.

    Returns
    -------
    xarray.DataArray
        ``rates``: float32 Hz, dims ``("trial", "time", "unit")``, the trials the spec's selection
        keeps. Coords: ``trial`` (row id of the intervals table, or the position in the stacked
        tables when the spec names several), ``time`` (bin centres, ``attrs["time_kind"]`` says
        seconds or reaction-time phase), ``phase`` along time ("pre"/"post"), ``unit`` (units table
        id), ``brain_area`` along unit, scalar ``session`` and ``subject`` (the file's subject_id;
        without one, the ``sub-<label>`` of the file name, else "unknown"), and one coord along
        ``trial`` per task column (the tables' own or derived). Attrs: ``units`` ("Hz"), ``spec`` (JSON), ``filter_weights``
        (JSON), ``source_file``, ``source_sha256``, ``subject``, ``session``. The data are
        unit-major in memory (a transposed view); ``np.ascontiguousarray`` gives C order.

    Raises
    ------
    AdapterError
        If the file is missing, truncated or not NWB, has no units, lacks the spec's table or
        columns (all missing task columns named at once, field ``task_columns``), has codes a
        code map cannot map, no trial passing the selection, invalid reaction or alignment times
        or intervals stopping before they start (in kept trials), spike times that look like
        milliseconds, units whose electrode is not in the electrodes table, or no unit passes
        the unit selection.

    Warns
    -----
    UserWarning
        If some units have NaN or infinite spike times (dropped), naming the file and the units;
        if the file has no subject_id, naming the label used instead.

    Examples
    --------
    >>> rates = load_spikes("sub-01_ses-01_ecephys.nwb", "paper")  # doctest: +SKIP
    >>> rates.sizes  # doctest: +SKIP
    Frozen({'trial': 400, 'time': 200, 'unit': 23})
    """
    spec = TeacherSpec.resolve(spec)
    if isinstance(nwb, SourceFile) and nwb.local is None:  # streamed: record the archive's URL and digest
        with nwb.open_nwb() as nwbfile:
            rates = load_spikes(nwbfile, spec, chunk_bytes=chunk_bytes, progress=progress)
        rates.attrs.update(source_file=nwb.url, source_sha256=nwb.sha256)
        return rates
    with _opened(nwb) as (nwbfile, path):
        label = path if path is not None else "<NWBFile>"
        tables = [(name, _intervals_table(nwbfile, name, label)) for name in spec.interval_tables]
        trials = TrialTable(tables, spec, label)
        units = _units_table(nwbfile, label)
        spike_index = np.asarray(units.spike_times_index.data[:], dtype=np.int64)
        spike_data = units.spike_times.data  # h5py dataset: read one slice per chunk of units
        if not hasattr(spike_data, "shape"):  # an in-memory NWBFile holds a list
            spike_data = np.asarray(spike_data, dtype=np.float64)
        _check_time_unit(spike_data, spike_index, trials.span, spec, label)
        areas = _unit_areas(units, spec.units.area_column, label)
        selected = _select_units(spike_data, spike_index, areas, trials.span, spec, label)
        bins = TrialBins.build(trial_edges(spec, trials.align, trials.reaction_times), bin_layout(spec))
        rates = spike_rates(
            spike_data,
            spike_index,
            selected,
            bins,
            spec.kernel(),
            skip=spec.n_history,
            time_scale=0.001 if spec.time_unit == "ms" else 1.0,
            chunk_bytes=chunk_bytes,
            progress=progress,
            source=str(label),
        )
        unit_ids = np.asarray(units.id.data[:])[selected]
        session = str(nwbfile.session_id or nwbfile.identifier or "")
        subject = _subject_label(nwbfile, path)
        return _as_dataarray(rates, spec, trials, unit_ids, areas[selected], session, subject, path)


@contextlib.contextmanager
def _opened(nwb: str | os.PathLike | Any) -> Iterator[tuple[Any, Path | None]]:
    """Yield ``(NWBFile, path or None)``; a path is opened read-only and closed afterwards."""
    if isinstance(nwb, SourceFile):  # fetched to disk
        nwb = nwb.local
    if not isinstance(nwb, (str, os.PathLike)):
        source = getattr(nwb, "container_source", None)
        yield nwb, Path(source) if source and Path(source).is_file() else None
        return
    path = Path(nwb)
    if not path.is_file():
        raise AdapterError("NWB file not found", file=path, field="nwb", fix="check the path")
    import h5py
    import pynwb

    if not h5py.is_hdf5(path):
        raise AdapterError("not an NWB file (not HDF5)", file=path, field="nwb", fix="pass an NWB (.nwb) file")
    try:
        io = pynwb.NWBHDF5IO(str(path), mode="r", load_namespaces=True)
    except OSError as error:  # truncated or corrupt HDF5
        raise _unreadable(path, error) from None
    try:
        try:
            with warnings.catch_warnings():  # files from older pynwb versions warn about deprecated fields
                warnings.simplefilter("ignore", DeprecationWarning)
                nwbfile = io.read()
        except Exception as error:  # any reader failure on a user's file is a bad input, not a bug
            raise _unreadable(path, error) from None
        yield nwbfile, path
    finally:
        io.close()


def _unreadable(path: Path, error: Exception) -> AdapterError:
    return AdapterError(
        f"cannot be read as NWB ({type(error).__name__}: {error})", file=path, field="nwb",
        fix="if it is truncated or corrupt (an interrupted download), download or copy it again; "
        "otherwise check it with nwbinspector",
    )


def _intervals_table(nwbfile: Any, name: str, file: Any) -> Any:
    tables = dict(nwbfile.intervals or {})
    for attribute in ("trials", "epochs", "invalid_times"):
        if getattr(nwbfile, attribute, None) is not None:
            tables.setdefault(attribute, getattr(nwbfile, attribute))
    if name in tables:
        return tables[name]
    have = ", ".join(sorted(tables)) or "none"
    what = "no trials table" if name == "trials" else f"no intervals table named {name!r}"
    raise AdapterError(
        f"the file has {what}; its intervals tables are: {have}",
        file=file,
        field="intervals",
        fix="set intervals = \"<one of those>\" in the spec" if tables else "use a file with a trials table",
    )


def _units_table(nwbfile: Any, file: Any) -> Any:
    units = nwbfile.units
    if units is None or "spike_times" not in units.colnames:
        raise AdapterError(
            "the file has no units table with spike times", file=file, field="units",
            fix="use a spike-sorted NWB file (units table with spike_times)",
        )
    if len(units.id.data[:]) == 0:
        raise AdapterError("the units table has no units", file=file, field="units")
    return units


def _check_time_unit(spike_data: Any, spike_index: np.ndarray, span: float, spec: TeacherSpec, file: Any) -> None:
    """Refuse spike times that are almost surely in milliseconds while the spec says seconds."""
    if spec.time_unit != "s":
        return
    last = spike_index[spike_index > np.concatenate([[0], spike_index[:-1]])] - 1
    if len(last) == 0:
        return
    latest = float(np.fmax.reduce(np.asarray(spike_data[last.tolist()], dtype=np.float64)))  # NaNs left out
    if latest > _MAX_PLAUSIBLE_SECONDS or (span > 0 and latest > _MAX_RATIO_TO_INTERVALS * span):
        raise AdapterError(
            f"spike times run to {latest:.6g} s while the {spec.intervals} table spans {span:.6g} s: "
            "they are almost surely in milliseconds",
            file=file,
            field="units.spike_times",
            fix='set time_unit = "ms" in the spec (TeacherSpec(time_unit="ms"))',
        )


def _subject_label(nwbfile: Any, path: Path | None) -> str:
    """The file's ``subject_id``; without one (no Subject, or an empty id), the ``sub-<label>`` of
    a DANDI/BIDS-style file name (``sub-P1_ses-2_ecephys.nwb`` -> ``P1``), else ``"unknown"``,
    with a warning naming the label used."""
    subject_id = str(getattr(nwbfile.subject, "subject_id", None) or "").strip()
    if subject_id:
        return subject_id
    match = re.match(r"sub-([A-Za-z0-9]+)", path.name) if path is not None else None
    label = match.group(1) if match else "unknown"
    warnings.warn(
        f"{path if path is not None else '<NWBFile>'}: general/subject: the file has no subject_id; the subject "
        f"is labelled {label!r} ({'from the file name' if match else 'no sub-<label> in the file name'}). "
        "Fix: add a Subject with subject_id to the file to name the subject",
        UserWarning,
        stacklevel=3,
    )
    return label


def _unit_areas(units: Any, column: str, file: Any) -> np.ndarray:
    """Brain area per unit: the first known of the spec's column, ``location``, the electrode's
    ``location`` and its electrode group's ``location`` (a unit's first electrode), else "unknown".
    """
    areas = np.full(len(units.id.data[:]), "", dtype=object)
    for candidate in _area_candidates(units, column, file):
        unknown = _is_unknown(areas)
        if not unknown.any():
            break
        areas[unknown] = candidate[unknown]
    areas[_is_unknown(areas)] = "unknown"
    return areas.astype(str)


def _is_unknown(areas: np.ndarray) -> np.ndarray:
    return np.isin(np.char.lower(areas.astype(str)), ("", "unknown"))


def _area_candidates(units: Any, column: str, file: Any) -> Iterator[np.ndarray]:
    """Area per unit from each source in turn ("" where a source says nothing)."""
    for name in dict.fromkeys((column, "location")):
        if name in units.colnames:
            yield as_text(units[name].data[:]).astype(object)
    if "electrodes" not in units.colnames:
        return
    first, electrodes = _first_electrodes(units["electrodes"])
    _check_electrode_rows(first, len(electrodes.id.data[:]), file)
    has = first >= 0
    if "location" in electrodes.colnames:
        yield _pick(as_text(electrodes["location"].data[:]), first, has)
    if "group" in electrodes.colnames:
        groups = electrodes["group"].data[:]
        yield _pick(as_text([getattr(group, "location", "") or "" for group in groups]), first, has)


def _check_electrode_rows(first: np.ndarray, n_electrodes: int, file: Any) -> None:
    """Refuse units whose electrode is not a row of the electrodes table."""
    bad = np.flatnonzero((first < -1) | (first >= n_electrodes))
    if len(bad):
        shown = ", ".join(f"units[{unit}] -> {first[unit]}" for unit in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise AdapterError(
            f"{len(bad)} unit(s) refer to electrodes that do not exist ({shown}); the electrodes table has "
            f"{n_electrodes} rows",
            file=file,
            field="units.electrodes",
            fix="re-export the file so that units.electrodes holds row numbers of the electrodes table "
            f"(0 to {n_electrodes - 1}), or check it with nwbinspector",
        )


def _pick(values: np.ndarray, rows: np.ndarray, has: np.ndarray) -> np.ndarray:
    picked = np.full(len(rows), "", dtype=object)
    picked[has] = values[rows[has]]
    return picked


def _first_electrodes(column: Any) -> tuple[np.ndarray, Any]:
    """Row of each unit's first electrode in the electrodes table (-1 for none), and that table.

    The units table's ``electrodes`` column is ragged (a ``VectorIndex`` over a region) when units
    may have several electrodes, and a plain ``DynamicTableRegion`` (one electrode per unit, no
    ``electrodes_index``) otherwise; the NWB schema allows both.
    """
    from hdmf.common import VectorIndex

    if not isinstance(column, VectorIndex):
        return np.asarray(column.data[:], dtype=np.int64), column.table
    ends = np.asarray(column.data[:], dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    region = np.asarray(column.target.data[:], dtype=np.int64)
    first = np.full(len(ends), -1, dtype=np.int64)
    first[ends > starts] = region[starts[ends > starts]]
    return first, column.target.table


def _select_units(
    spike_data: Any, spike_index: np.ndarray, areas: np.ndarray, span: float, spec: TeacherSpec, file: Any
) -> np.ndarray:
    """Positions of the units passing the region filter and the minimum mean rate (finite spikes /
    span: NaN and infinite spike times do not count)."""
    keep = np.ones(len(spike_index), dtype=bool)
    if spec.units.regions:
        wanted = {region.lower() for region in spec.units.regions}
        keep &= np.array([area.lower() in wanted for area in areas], dtype=bool)
    if spec.units.min_rate > 0:
        counts = np.diff(spike_index, prepend=0) - _non_finite_counts(spike_data, spike_index)
        keep &= counts / max(span, np.finfo(float).tiny) >= spec.units.min_rate
    if not keep.any():
        raise AdapterError(
            f"no unit passes the selection (regions {list(spec.units.regions) or 'all'}, "
            f"min_rate {spec.units.min_rate} Hz); the file's areas are {sorted(set(areas))}",
            file=file,
            field="units.regions" if spec.units.regions else "units.min_rate",
            fix="widen the unit selection in the spec",
        )
    return np.flatnonzero(keep)


def _non_finite_counts(spike_data: Any, spike_index: np.ndarray, *, block: int = 1 << 22) -> np.ndarray:
    """NaN or infinite spike times per unit, reading the spike data in blocks of ``block`` values."""
    counts = np.zeros(len(spike_index), dtype=np.int64)
    for lo in range(0, int(spike_index[-1]) if len(spike_index) else 0, block):
        bad = lo + np.flatnonzero(~np.isfinite(np.asarray(spike_data[lo : lo + block], dtype=np.float64)))
        counts += np.bincount(np.searchsorted(spike_index, bad, side="right"), minlength=len(spike_index))
    return counts


def _as_dataarray(
    rates: np.ndarray,
    spec: TeacherSpec,
    trials: TrialTable,
    unit_ids: np.ndarray,
    areas: np.ndarray,
    session: str,
    subject: str,
    path: Path | None,
) -> xr.DataArray:
    time, phase = spec.time_coordinate()
    coords: dict[str, Any] = {
        "trial": trials.ids,
        "time": ("time", time, {"time_kind": spec.time_kind, "description": _TIME_DESCRIPTIONS[spec.time_kind]}),
        "phase": ("time", phase),
        "unit": unit_ids,
        "brain_area": ("unit", areas),
        "session": session,
        "subject": subject,
    }
    coords.update({name: ("trial", values) for name, values in trials.task.items()})
    attrs = {
        "units": "Hz",
        "spec": spec.to_json(),
        "filter_weights": json.dumps(spec.kernel().tolist()),
        "source_file": "" if path is None else str(path.resolve()),
        "source_sha256": "" if path is None else sha256(path),
        "subject": subject,
        "session": session,
    }
    return xr.DataArray(rates, dims=("trial", "time", "unit"), coords=coords, attrs=attrs, name="rates")
