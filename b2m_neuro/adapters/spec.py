"""Teacher specs: how an NWB recording becomes a ``(trial, time, unit)`` rate array.

A :class:`TeacherSpec` says which intervals table holds the trials, which column is the alignment
event, the pre- and post-event windows and their bins, the causal smoothing filter, which columns
become task variables and which units to keep. It is a frozen dataclass, built in Python or read
from a TOML file (:meth:`TeacherSpec.from_toml`); shipped presets (``TeacherSpec.preset("paper")``)
live in ``b2m_neuro/adapters/presets/*.toml``.

TOML layout (every key optional unless marked)::

    name = "paper"                       # free text, shown by ``b2m-neuro presets``
    description = "one line"
    intervals = "trials"                 # NWB intervals table: "trials", "epochs" or any TimeIntervals;
                                         # a list (["encoding_table", "recognition_table"]) stacks several
    align = "stimulus_onset"             # required: column holding the alignment time (s)
    time_unit = "s"                      # unit of the units table's spike times: "s" or "ms"
    task_columns = ["stimulus", "correct"]

    [select]                             # optional: which trials to keep (all conditions must hold)
    where = "stim_phase == 'recog' and response_value > 0"   # safe expression (see expressions.py)
    keep = { stim_phase = ["learn", "recog"] }               # keep rows whose value is listed
    drop = { accuracy = [0] }                                # drop rows whose value is listed

    [derive.target]                      # optional: derived columns, computed in this order and
                                         #   usable like the table's own (or [[derive]] name = "target")
    map = "new_old_labels_recog"         # a code map: value -> new value
    values = { "0" = 1, "1" = 0 }
    default = -1                         # for values not listed (without it they are an error)
    [derive.reaction_time]
    sum = ["timestamps_Response"]        # the sum of columns ...
    minus = ["timestamps_Probe"]         # ... minus these
    [derive.correct]
    expression = "target == response"    # an expression (true/false -> 1/0; a bare name copies)
    [derive.episode]
    blocks = 20                          # block number of each kept trial: 0 for the first 20, ...

    [pre]                                # optional: window before the event (seconds)
    start = -1.0
    stop = 0.0
    bin_width = 0.01

    [post]                               # required: window after the event
    kind = "reaction_time"               # or "fixed" (then start, stop, bin_width in seconds)
    column = "reaction_time"             # reaction-time column (s), for kind = "reaction_time"
    n_bins = 100                         # bins between the event and event + reaction time

    [filter]
    kind = "exponential"                 # "exponential", "custom" (weights = [...]) or "none"
    decay = 0.5                          # in bins: weights exp(-decay * x) for x = 0, step, ..., stop,
    step = 0.5                           #   one weight per bin whatever the bin width
    stop = 10.0
    # time_constant = 0.05               # in seconds instead: weights exp(-t / time_constant) for
    # duration = 0.2                     #   t = 0, bin, 2 bin, ... <= duration (fixed windows only)
    history = 0.0                        # seconds before the first window binned and filtered too
                                         #   (then dropped), so the filter starts with real history
    normalize = "sum"                    # "sum" (weights sum to 1: output stays in Hz) or "none"

    [units]
    regions = []                         # keep only these brain areas (case-insensitive); [] = all
    min_rate = 0.0                       # Hz, spikes / span of the intervals table
    area_column = "brain_area"           # units column holding the brain area
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from b2m_neuro._util.files import read_toml
from b2m_neuro.errors import AdapterError

__all__ = [
    "TeacherSpec", "FixedWindow", "ReactionTimeWindow", "FilterSpec", "UnitSelection", "TrialSelection", "CodeMap",
    "ColumnSum", "ColumnExpression", "TrialBlocks", "list_presets",
]

_PRESET_FOLDER = "presets"
# coordinates of the adapter output: no task or derived column may take these names
RESERVED_COORDS = ("trial", "time", "phase", "unit", "brain_area", "session", "subject")


def _table_names(names: Any) -> str | tuple[str, ...]:
    """One table name as a str, several as a tuple (a one-element list is one name)."""
    names = tuple(str(name) for name in names)
    if not names or len(set(names)) < len(names):
        raise AdapterError(f"intervals must name one or more distinct tables, not {list(names)}", field="intervals")
    return names[0] if len(names) == 1 else names


def _value_lists(pairs: Any, field_name: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``{column: [values]}`` or pairs -> ``((column, (values...)), ...)``."""
    pairs = tuple(pairs.items()) if isinstance(pairs, dict) else tuple(pairs)
    result = []
    for column, values in pairs:
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values or any(isinstance(v, (list, dict, tuple)) for v in values):
            raise AdapterError(f"{field_name}.{column} must be a list of values, not {values!r}",
                               field=f"{field_name}.{column}", fix=f'write {column} = [value, ...]')  # fmt: skip
        result.append((str(column), values))
    return tuple(sorted(result))  # conditions that must all hold have no order (JSON sorts its keys)


@dataclass(frozen=True)
class FixedWindow:
    """A window from ``start`` to ``stop`` seconds around the alignment event, in equal bins."""

    start: float
    stop: float
    bin_width: float
    kind: str = field(default="fixed", init=False)

    def __post_init__(self) -> None:
        if not self.stop > self.start:
            raise AdapterError(f"window stop ({self.stop}) must be after its start ({self.start})", field="stop")
        if not self.bin_width > 0:
            raise AdapterError(f"bin width must be positive, not {self.bin_width}", field="bin_width")
        if abs(self.n_bins * self.bin_width - (self.stop - self.start)) > 1e-6 * self.bin_width:
            raise AdapterError(
                f"the window {self.start} to {self.stop} s is not a whole number of {self.bin_width} s bins",
                field="bin_width",
                fix="choose a bin width that divides the window length",
            )

    @property
    def n_bins(self) -> int:
        return round((self.stop - self.start) / self.bin_width)

    def offsets(self) -> np.ndarray:
        """Bin edges in seconds relative to the event, ``n_bins + 1`` values."""
        return np.linspace(self.start, self.stop, self.n_bins + 1)


@dataclass(frozen=True)
class ReactionTimeWindow:
    """From the event to the event plus the trial's reaction time, always in ``n_bins`` bins."""

    column: str = "reaction_time"
    n_bins: int = 100
    kind: str = field(default="reaction_time", init=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.n_bins, int) and self.n_bins > 0):
            raise AdapterError(f"n_bins must be a positive integer, not {self.n_bins!r}", field="n_bins")

    @property
    def start(self) -> float:
        return 0.0

    def phases(self) -> np.ndarray:
        """Bin edges as fractions of the reaction time, ``n_bins + 1`` values from 0 to 1."""
        return np.linspace(0.0, 1.0, self.n_bins + 1)


@dataclass(frozen=True)
class FilterSpec:
    """A causal smoothing filter applied along time to each trial's rate vector, per unit.

    ``kind="exponential"`` is given either in bins or in seconds. In bins (``decay``, ``step``,
    ``stop``): the weights ``exp(-decay * x)`` for ``x = 0, step, ..., stop``, one weight per bin
    whatever the bin width (so its length in seconds scales with the bins). In seconds
    (``time_constant`` and ``duration``, both > 0): the weights ``exp(-t / time_constant)`` for
    ``t = 0, w, 2w, ... <= duration`` with ``w`` the bin width, the same filter in seconds whatever
    the bins (fixed windows with one bin width only). The first weight multiplies the current bin,
    the next the bin before it, and so on (no bin sees the future). The reference kernel of the
    paper, ``20 zeros followed by exp(-0.5 x)`` applied as a centred ("same") convolution, is
    exactly the causal filter in bins: the 20 zeros cancel the centring.

    Bins before a trial's first bin count as zero unless ``history`` (seconds) > 0: then that much
    time before the first window is binned like the first window (rounded up to whole bins),
    filtered with the rest and dropped, so the first bins carry no warm-up ramp. ``normalize="sum"``
    divides the weights by their sum so that the output stays a rate in Hz (a constant rate passes
    unchanged once the kernel is full); ``"none"`` keeps the raw weights (rates scaled by their sum,
    about 4.0 for the paper kernel).
    """

    kind: str = "none"
    decay: float = 0.5
    step: float = 0.5
    stop: float = 10.0
    weights: tuple[float, ...] = ()
    normalize: str = "sum"
    time_constant: float = 0.0
    duration: float = 0.0
    history: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if self.kind not in ("exponential", "custom", "none"):
            raise AdapterError(
                f"unknown filter kind {self.kind!r}", field="filter.kind", fix='use "exponential", "custom" or "none"'
            )
        if self.normalize not in ("sum", "none"):
            raise AdapterError(f"unknown normalization {self.normalize!r}", field="filter.normalize", fix='use "sum" or "none"')
        if not self.history >= 0:
            raise AdapterError(f"history must be >= 0 seconds, not {self.history}", field="filter.history")
        if self.in_seconds:
            self._check_seconds()
        elif self.duration:
            raise AdapterError("duration needs a time_constant", field="filter.duration",
                               fix="give time_constant (s) with duration, or leave both out for a filter in bins")
        if self.kind == "exponential" and not self.in_seconds and not (self.step > 0 and self.stop >= 0):
            raise AdapterError("exponential filter needs step > 0 and stop >= 0", field="filter.step")
        if self.kind == "custom" and not self.weights:
            raise AdapterError("a custom filter needs its weights", field="filter.weights", fix="give weights = [...]")
        if self.kind == "custom" and self.normalize == "sum" and math.isclose(sum(self.weights), 0.0, abs_tol=1e-12):
            raise AdapterError("filter weights sum to zero and cannot be normalized", field="filter.normalize")

    def _check_seconds(self) -> None:
        if self.kind != "exponential":
            raise AdapterError("time_constant applies to the exponential filter", field="filter.time_constant",
                               fix='set kind = "exponential" or remove time_constant')
        if (self.decay, self.step, self.stop) != (0.5, 0.5, 10.0):
            raise AdapterError(
                "the filter is given both in bins (decay, step, stop) and in seconds (time_constant)",
                field="filter.time_constant", fix="keep one: time_constant + duration (s), or decay + step + stop (bins)",
            )
        if not (self.time_constant > 0 and self.duration > 0):
            raise AdapterError(
                f"a filter in seconds needs time_constant > 0 and duration > 0, not {self.time_constant} and {self.duration}",
                field="filter.duration" if self.time_constant > 0 else "filter.time_constant",
                fix="give both in seconds, e.g. time_constant = 0.05 and duration = 0.25",
            )

    @property
    def in_seconds(self) -> bool:
        """Whether the kernel is given in seconds (``time_constant``) rather than in bins."""
        return self.time_constant != 0.0

    def kernel(self, bin_width: float | None = None) -> np.ndarray:
        """The causal weights actually applied (``[1.0]`` for no filter), float64.

        ``bin_width`` (s) is needed, and only used, for a filter in seconds.
        """
        if self.kind == "none":
            return np.ones(1)
        if self.kind == "exponential" and self.in_seconds:
            if bin_width is None:
                raise AdapterError("a filter in seconds needs the bin width", field="filter.time_constant",
                                   fix="use TeacherSpec.kernel(), which knows the bins")
            t = bin_width * np.arange(math.floor(self.duration / bin_width + 1e-9) + 1)
            weights = np.exp(-t / self.time_constant)
        elif self.kind == "exponential":
            x = self.step * np.arange(round(self.stop / self.step) + 1)
            weights = np.exp(-self.decay * x)
        else:
            weights = np.asarray(self.weights, dtype=float)
        return weights / weights.sum() if self.normalize == "sum" else weights


@dataclass(frozen=True)
class TrialSelection:
    """Which trials (rows of the intervals table) to keep; every given condition must hold.

    ``where`` is an expression in the safe selection language of
    :mod:`b2m_neuro.adapters.expressions` (``"stim_phase == 'recog' and response_value > 30"``);
    ``keep`` maps a column to the values whose rows are kept, ``drop`` to the values whose rows are
    dropped. Columns may be the table's own or derived ones (except block numbers, which count the
    kept trials).
    """

    where: str = ""
    keep: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    drop: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def __post_init__(self) -> None:
        from b2m_neuro.adapters.expressions import ExpressionError, check_expression

        for name in ("keep", "drop"):
            object.__setattr__(self, name, _value_lists(getattr(self, name), f"select.{name}"))
        if self.where:
            try:
                check_expression(self.where)
            except ExpressionError as error:
                raise AdapterError(f"the expression {self.where!r}: {error}", field="select.where",
                                   fix="write a comparison of columns and constants, e.g. response_value > 0") from None

    def __bool__(self) -> bool:
        return bool(self.where or self.keep or self.drop)


@dataclass(frozen=True)
class CodeMap:
    """A derived column mapping each value of ``column`` to a new value (e.g. ``{2: "old", 1: "new"}``).

    Values not in ``values`` get ``default``; without a default they are an error at load time.
    Keys are kept as text and matched to the column's values as numbers for a numeric column, as
    text otherwise.
    """

    column: str
    values: tuple[tuple[Any, Any], ...]
    default: Any = None

    def __post_init__(self) -> None:
        pairs = tuple(self.values.items()) if isinstance(self.values, dict) else tuple(tuple(p) for p in self.values)
        # keys as text (as TOML writes them; matched as numbers to a numeric column), in a fixed order
        pairs = tuple(sorted((str(key), value) for key, value in pairs))
        object.__setattr__(self, "values", pairs)
        if not pairs:
            raise AdapterError("a code map needs its values", field="values", fix='give values = { "2" = "old", "1" = "new" }')
        outputs = [value for _, value in pairs] + ([] if self.default is None else [self.default])
        if len({isinstance(value, str) for value in outputs}) > 1 or any(isinstance(v, (bool, list, dict)) for v in outputs):
            raise AdapterError(f"the mapped values {outputs} must be all numbers or all text", field="values")


@dataclass(frozen=True)
class ColumnSum:
    """A derived column: the sum of the ``plus`` columns minus the ``minus`` columns (e.g. a
    reaction time ``timestamps_Response - timestamps_Probe``, or an alignment ``onset + delay``)."""

    plus: tuple[str, ...]
    minus: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "plus", tuple(str(c) for c in self.plus))
        object.__setattr__(self, "minus", tuple(str(c) for c in self.minus))
        if not self.plus:
            raise AdapterError("a sum needs at least one column", field="sum", fix='give sum = ["column", ...]')


@dataclass(frozen=True)
class TrialBlocks:
    """A derived column: the block number of each kept trial, ``position // size`` in table order
    (episodes as blocks of ``size`` trials), counted after the trial selection."""

    size: int

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and not isinstance(self.size, bool) and self.size > 0):
            raise AdapterError(f"blocks must be a positive integer, not {self.size!r}", field="blocks")


@dataclass(frozen=True)
class ColumnExpression:
    """A derived column computed by an expression of the safe selection language (see
    :mod:`b2m_neuro.adapters.expressions`): ``"target == response"`` (true/false become 1/0),
    ``"external_image_file"`` (a copy under a new name), ``"Clip_name + frameName"`` (text joined)."""

    expression: str

    def __post_init__(self) -> None:
        from b2m_neuro.adapters.expressions import ExpressionError, check_expression

        try:
            check_expression(self.expression)
        except ExpressionError as error:
            raise AdapterError(f"the expression {self.expression!r}: {error}", field="expression",
                               fix="write an expression of columns and constants, e.g. target == response") from None


Derivation = CodeMap | ColumnSum | ColumnExpression | TrialBlocks


@dataclass(frozen=True)
class UnitSelection:
    """Which units to keep: by brain area and by mean firing rate."""

    regions: tuple[str, ...] = ()
    min_rate: float = 0.0
    area_column: str = "brain_area"

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", tuple(str(r) for r in self.regions))
        if self.min_rate < 0:
            raise AdapterError(f"min_rate must be >= 0, not {self.min_rate}", field="units.min_rate")


@dataclass(frozen=True)
class TeacherSpec:
    """How to turn one NWB session into a ``(trial, time, unit)`` firing-rate array.

    Parameters
    ----------
    align
        Column of the intervals table holding the alignment time (s), e.g. ``"stimulus_onset"``.
    post
        Window after the event: :class:`FixedWindow` or :class:`ReactionTimeWindow`.
    pre
        Window before the event (:class:`FixedWindow`, must end at or before ``post`` starts), or None.
    intervals
        Name of the NWB intervals table holding one row per trial (``"trials"``, ``"epochs"`` ...),
        or several names: their rows are stacked in the order given (e.g. a study table, then a
        test table), the output's ``trial`` is then the position 0, 1, ... The column
        ``interval_table`` names each row's table (for one table too). A column missing from some of the tables is NaN
        (numbers) or "" (text) in their rows.
    select
        Which trials to keep (:class:`TrialSelection`); all by default.
    derive
        Derived columns, name -> :class:`CodeMap`, :class:`ColumnSum`, :class:`ColumnExpression` or
        :class:`TrialBlocks` (a dict, or ``(name, derivation)`` pairs), computed in order; usable
        as the alignment, reaction-time, selection and task columns.
    filter
        Causal smoothing filter (:class:`FilterSpec`).
    task_columns
        Columns of the intervals table that become coordinates along ``trial``.
    units
        Unit selection (:class:`UnitSelection`).
    time_unit
        Unit of the spike times stored in the file: ``"s"`` (NWB standard) or ``"ms"``.
    name, description
        Free text, shown by ``b2m-neuro presets``.

    Examples
    --------
    >>> spec = TeacherSpec.preset("paper")
    >>> spec.n_time, spec.post.n_bins, spec.align
    (200, 100, 'stimulus_onset')
    >>> fixed = TeacherSpec(align="start_time", intervals="epochs", post=FixedWindow(0.0, 2.0, 0.1))
    >>> fixed.n_time
    20
    """

    align: str
    post: FixedWindow | ReactionTimeWindow
    pre: FixedWindow | None = None
    intervals: str | tuple[str, ...] = "trials"
    select: TrialSelection = TrialSelection()
    derive: tuple[tuple[str, Derivation], ...] = ()
    filter: FilterSpec = FilterSpec()
    task_columns: tuple[str, ...] = ()
    units: UnitSelection = UnitSelection()
    time_unit: str = "s"
    name: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "task_columns", tuple(str(c) for c in self.task_columns))
        if not isinstance(self.intervals, str):
            object.__setattr__(self, "intervals", _table_names(self.intervals))
        derive = tuple(self.derive.items()) if isinstance(self.derive, dict) else tuple(tuple(p) for p in self.derive)
        object.__setattr__(self, "derive", derive)
        for name, _ in derive:
            if name in RESERVED_COORDS:
                raise AdapterError(f"derived column {name!r} clashes with an output coordinate", field=f"derive.{name}",
                                   fix=f"derived columns cannot be named {', '.join(RESERVED_COORDS)}")
        if self.filter.in_seconds and self.bin_width is None:
            raise AdapterError(
                "a filter in seconds needs fixed pre and post windows with one bin width",
                field="filter.time_constant",
                fix="use fixed windows with the same bin_width, or give the filter in bins (decay, step, stop)",
            )
        if self.filter.history > 0 and self.first_window.kind != "fixed":
            raise AdapterError(
                "history before a reaction-time window has no bin width", field="filter.history",
                fix="add a fixed [pre] window (history is binned like it), or set history = 0",
            )
        if self.time_unit not in ("s", "ms"):
            raise AdapterError(f"unknown time unit {self.time_unit!r}", field="time_unit", fix='use "s" or "ms"')
        if self.pre is not None and self.pre.stop > self.post.start:
            raise AdapterError(
                f"the pre window ends at {self.pre.stop} s, after the post window starts ({self.post.start} s)",
                field="pre.stop",
                fix="make the pre window end at or before the post window's start",
            )

    # ----------------------------------------------------------------- derived layout
    @property
    def interval_tables(self) -> tuple[str, ...]:
        """The intervals table name(s), always as a tuple."""
        return (self.intervals,) if isinstance(self.intervals, str) else self.intervals

    @property
    def first_window(self) -> FixedWindow | ReactionTimeWindow:
        return self.post if self.pre is None else self.pre

    @property
    def bin_width(self) -> float | None:
        """The one bin width (s) of all windows, or None (reaction-time bins, or several widths)."""
        windows = [w for w in (self.pre, self.post) if w is not None]
        widths = {w.bin_width for w in windows if w.kind == "fixed"}
        return widths.pop() if len(widths) == 1 and all(w.kind == "fixed" for w in windows) else None

    @property
    def n_history(self) -> int:
        """Bins of history before the first window (binned, filtered, then dropped); none without a
        filter, whose output does not depend on them."""
        if self.filter.history == 0 or self.filter.kind == "none":
            return 0
        return math.ceil(self.filter.history / self.first_window.bin_width - 1e-9)

    def kernel(self) -> np.ndarray:
        """The filter weights applied to this spec's bins (see :meth:`FilterSpec.kernel`)."""
        return self.filter.kernel(self.bin_width)

    @property
    def n_pre(self) -> int:
        return 0 if self.pre is None else self.pre.n_bins

    @property
    def n_time(self) -> int:
        """Number of time points per trial (pre bins then post bins)."""
        return self.n_pre + self.post.n_bins

    @property
    def time_kind(self) -> str:
        """What the ``time`` coordinate measures: see :meth:`time_coordinate`."""
        if self.post.kind == "fixed":
            return "seconds"
        return "rt_phase" if self.pre is None else "pre_seconds_then_rt_phase"

    def time_coordinate(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin centres along ``time`` and the ``phase`` label ("pre"/"post") of each.

        Pre bins and fixed post bins are in seconds relative to the event; reaction-time bins are
        fractions of the reaction time (0 = event, 1 = response), so the paper spec gives
        -0.995 ... -0.005 s, then 0.005 ... 0.995.
        """
        parts, phases = [], []
        if self.pre is not None:
            edges = self.pre.offsets()
            parts.append((edges[:-1] + edges[1:]) / 2)
            phases += ["pre"] * self.pre.n_bins
        edges = self.post.offsets() if self.post.kind == "fixed" else self.post.phases()
        parts.append((edges[:-1] + edges[1:]) / 2)
        phases += ["post"] * self.post.n_bins
        return np.concatenate(parts), np.array(phases)

    # ----------------------------------------------------------------- construction
    @classmethod
    def preset(cls, name: str) -> TeacherSpec:
        """Return a shipped preset by name (see :func:`list_presets`)."""
        presets = list_presets()
        if name not in presets:
            raise AdapterError(
                f"no preset named {name!r}", field="spec", fix=f"use one of {sorted(presets)} or a TOML file path"
            )
        return cls.from_toml(_preset_path(name))

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TeacherSpec:
        """Read a spec from a TOML file (layout in this module's docstring)."""
        path = Path(path)
        return cls.from_dict(read_toml(path, error=AdapterError, what="teacher spec"), file=path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, file: str | os.PathLike | None = None) -> TeacherSpec:
        """Build a spec from nested plain values, as in the TOML file or :meth:`to_dict`."""
        try:
            return _spec_from_dict(data)
        except AdapterError as error:
            raise AdapterError(error.problem, file=file, field=error.field, fix=error.fix) from None

    @classmethod
    def resolve(cls, spec: TeacherSpec | str | os.PathLike | None) -> TeacherSpec:
        """A spec from a spec, a preset name, a TOML path, or None (the ``"paper"`` preset)."""
        if spec is None:
            return cls.preset("paper")
        if isinstance(spec, TeacherSpec):
            return spec
        if isinstance(spec, str) and spec in list_presets():
            return cls.preset(spec)
        return cls.from_toml(spec)

    def replace(self, **changes: Any) -> TeacherSpec:
        """A copy with some fields changed, e.g. ``spec.replace(intervals="epochs")``."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- export
    def to_dict(self) -> dict[str, Any]:
        """Nested plain values (the TOML layout); ``TeacherSpec.from_dict`` inverts it."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "intervals": self.intervals if isinstance(self.intervals, str) else list(self.intervals),
            "align": self.align,
            "time_unit": self.time_unit,
            "task_columns": list(self.task_columns),
        }
        if self.select:
            data["select"] = _selection_section(self.select)
        if self.derive:
            data["derive"] = [{"name": name, **_derivation_section(derivation)} for name, derivation in self.derive]
        if self.pre is not None:
            data["pre"] = _section(self.pre, exclude=("kind",))
        data["post"] = _section(self.post)
        in_bins = ("time_constant", "duration") if not self.filter.in_seconds else ("decay", "step", "stop")
        data["filter"] = {key: value for key, value in _section(self.filter).items()
                          if not (key in in_bins or key == "history" and value == 0.0)}  # fmt: skip
        data["units"] = _section(self.units)
        return data

    def to_json(self) -> str:
        """The spec as a JSON string (stored in the adapter output's ``attrs["spec"]``)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def list_presets() -> dict[str, str]:
    """Shipped presets: name -> one-line description."""
    folder = resources.files("b2m_neuro.adapters").joinpath(_PRESET_FOLDER)
    presets = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            presets[entry.name.removesuffix(".toml")] = str(data.get("description", ""))
    return presets


def preset_text(name: str) -> str:
    """The TOML text of a shipped preset."""
    TeacherSpec.preset(name)  # raises a clear error for an unknown name
    return Path(str(_preset_path(name))).read_text(encoding="utf-8")


def _preset_path(name: str):
    return resources.files("b2m_neuro.adapters").joinpath(_PRESET_FOLDER).joinpath(f"{name}.toml")


# --------------------------------------------------------------------- dict <-> dataclasses
_TOP_KEYS = ("name", "description", "intervals", "align", "time_unit", "task_columns", "select", "derive", "pre", "post",
             "filter", "units")  # fmt: skip
_FIXED_KEYS = ("kind", "start", "stop", "bin_width")
_RT_KEYS = ("kind", "column", "n_bins")
_FILTER_OPTIONAL = ("time_constant", "duration", "history")  # newer keys, left out of to_dict when unused
_FILTER_KEYS = ("kind", "decay", "step", "stop", "weights", "normalize", *_FILTER_OPTIONAL)
_UNIT_KEYS = ("regions", "min_rate", "area_column")
_SELECT_KEYS = ("where", "keep", "drop")
_DERIVE_KEYS = {"map": ("map", "values", "default"), "sum": ("sum", "minus"), "expression": ("expression",),
                "blocks": ("blocks",)}  # fmt: skip


def _selection_section(selection: TrialSelection) -> dict[str, Any]:
    data: dict[str, Any] = {"where": selection.where} if selection.where else {}
    for name in ("keep", "drop"):
        if getattr(selection, name):
            data[name] = {column: list(values) for column, values in getattr(selection, name)}
    return data


def _derivation_section(derivation: Derivation) -> dict[str, Any]:
    if isinstance(derivation, CodeMap):
        data = {"map": derivation.column, "values": {str(key): value for key, value in derivation.values}}
        return data if derivation.default is None else {**data, "default": derivation.default}
    if isinstance(derivation, ColumnSum):
        return {"sum": list(derivation.plus), **({"minus": list(derivation.minus)} if derivation.minus else {})}
    if isinstance(derivation, ColumnExpression):
        return {"expression": derivation.expression}
    return {"blocks": derivation.size}


def _section(obj: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    values = dataclasses.asdict(obj)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items() if key not in exclude}


def _spec_from_dict(data: dict[str, Any]) -> TeacherSpec:
    _check_keys(data, _TOP_KEYS, prefix="")
    if "align" not in data:
        raise AdapterError("the spec has no alignment column", field="align", fix='add align = "<column name>"')
    if "post" not in data:
        raise AdapterError("the spec has no post-event window", field="post", fix="add a [post] table")
    kwargs: dict[str, Any] = {key: _typed(data, key, str) for key in ("name", "description", "align", "time_unit") if key in data}
    if "intervals" in data:
        kwargs["intervals"] = (_typed_list(data, "intervals", str, prefix="") if isinstance(data["intervals"], list)
                               else _typed(data, "intervals", str))  # fmt: skip
    if "task_columns" in data:
        kwargs["task_columns"] = tuple(_typed_list(data, "task_columns", str, prefix=""))
    if "select" in data:
        kwargs["select"] = _select(_table(data, "select"))
    if "derive" in data:
        kwargs["derive"] = _derivations(data["derive"])
    if "pre" in data:
        pre = _table(data, "pre")
        _check_keys(pre, _FIXED_KEYS, prefix="pre.")
        if pre.get("kind", "fixed") != "fixed":
            raise AdapterError("the pre window can only be fixed", field="pre.kind", fix='remove kind or set kind = "fixed"')
        kwargs["pre"] = _window(pre, "pre.")
    kwargs["post"] = _post(_table(data, "post"))
    if "filter" in data:
        kwargs["filter"] = _filter(_table(data, "filter"))
    if "units" in data:
        kwargs["units"] = _units(_table(data, "units"))
    return TeacherSpec(**kwargs)


def _post(post: dict[str, Any]) -> FixedWindow | ReactionTimeWindow:
    kind = post.get("kind", "fixed")
    if kind == "fixed":
        _check_keys(post, _FIXED_KEYS, prefix="post.")
        return _window(post, "post.")
    if kind == "reaction_time":
        _check_keys(post, _RT_KEYS, prefix="post.")
        kwargs = {}
        if "column" in post:
            kwargs["column"] = _typed(post, "column", str, prefix="post.")
        if "n_bins" in post:
            kwargs["n_bins"] = _typed(post, "n_bins", int, prefix="post.")
        return _prefixed(ReactionTimeWindow, kwargs, "post.")
    raise AdapterError(f"unknown post window kind {kind!r}", field="post.kind", fix='use "fixed" or "reaction_time"')


def _window(table: dict[str, Any], prefix: str) -> FixedWindow:
    for key in ("start", "stop", "bin_width"):
        if key not in table:
            raise AdapterError(f"the window has no {key}", field=f"{prefix}{key}", fix=f"add {key} = <seconds>")
    values = {key: _typed(table, key, float, prefix=prefix) for key in ("start", "stop", "bin_width")}
    return _prefixed(FixedWindow, values, prefix)


def _filter(table: dict[str, Any]) -> FilterSpec:
    _check_keys(table, _FILTER_KEYS, prefix="filter.")
    both = [key for key in ("decay", "step", "stop") if key in table]
    if both and "time_constant" in table:
        raise AdapterError(
            f"the filter is given both in bins ({', '.join(both)}) and in seconds (time_constant)",
            field="filter.time_constant", fix="keep one: time_constant + duration (s), or decay + step + stop (bins)",
        )
    kwargs = {key: _typed(table, key, str, prefix="filter.") for key in ("kind", "normalize") if key in table}
    kwargs.update({key: _typed(table, key, float, prefix="filter.") for key in ("decay", "step", "stop", *_FILTER_OPTIONAL)
                   if key in table})  # fmt: skip
    if "weights" in table:
        kwargs["weights"] = tuple(_typed_list(table, "weights", float, prefix="filter."))
    return _prefixed(FilterSpec, kwargs, "filter.")


def _select(table: dict[str, Any]) -> TrialSelection:
    _check_keys(table, _SELECT_KEYS, prefix="select.")
    kwargs: dict[str, Any] = {"where": _typed(table, "where", str, prefix="select.")} if "where" in table else {}
    for name in ("keep", "drop"):
        if name in table:
            kwargs[name] = _table(table, name, prefix="select.")
    return _prefixed(TrialSelection, kwargs, "select.")


def _derivations(data: Any) -> tuple[tuple[str, Derivation], ...]:
    """``[derive.<name>]`` tables, or a list of tables with a ``name`` (``[[derive]]``; order kept in JSON)."""
    if isinstance(data, dict):
        return tuple((str(name), _derivation(str(name), table)) for name, table in data.items())
    if not (isinstance(data, list) and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in data)):
        raise AdapterError("derive must be a table of [derive.<name>] tables", field="derive",
                           fix='write [derive.target] with map = "...", values = {...}')  # fmt: skip
    return tuple((t["name"], _derivation(t["name"], {k: v for k, v in t.items() if k != "name"})) for t in data)


def _derivation(name: str, table: Any) -> Derivation:
    prefix = f"derive.{name}."
    if not isinstance(table, dict):
        raise AdapterError(f"derive.{name} must be a table", field=f"derive.{name}",
                           fix=f"write it as [derive.{name}] with one of: {', '.join(_DERIVE_KEYS)}")  # fmt: skip
    kinds = [kind for kind in _DERIVE_KEYS if kind in table]
    if len(kinds) != 1:
        raise AdapterError(f"derive.{name} needs exactly one of {', '.join(_DERIVE_KEYS)} (has {kinds or 'none'})",
                           field=f"derive.{name}", fix="give one way to compute the column")  # fmt: skip
    kind = kinds[0]
    _check_keys(table, _DERIVE_KEYS[kind], prefix=prefix)
    if kind == "map":
        if "values" not in table:
            raise AdapterError("a code map needs its values", field=f"{prefix}values",
                               fix='give values = { "2" = "old", "1" = "new" }')  # fmt: skip
        kwargs = {"column": _typed(table, "map", str, prefix=prefix), "values": _table(table, "values", prefix=prefix),
                  "default": table.get("default")}  # fmt: skip
        return _prefixed(CodeMap, kwargs, prefix)
    if kind == "sum":
        minus = tuple(_typed_list(table, "minus", str, prefix=prefix)) if "minus" in table else ()
        return _prefixed(ColumnSum, {"plus": tuple(_typed_list(table, "sum", str, prefix=prefix)), "minus": minus}, prefix)
    if kind == "expression":
        return _prefixed(ColumnExpression, {"expression": _typed(table, "expression", str, prefix=prefix)}, prefix)
    return _prefixed(TrialBlocks, {"size": _typed(table, "blocks", int, prefix=prefix)}, prefix)


def _units(table: dict[str, Any]) -> UnitSelection:
    _check_keys(table, _UNIT_KEYS, prefix="units.")
    kwargs: dict[str, Any] = {}
    if "regions" in table:
        kwargs["regions"] = tuple(_typed_list(table, "regions", str, prefix="units."))
    if "min_rate" in table:
        kwargs["min_rate"] = _typed(table, "min_rate", float, prefix="units.")
    if "area_column" in table:
        kwargs["area_column"] = _typed(table, "area_column", str, prefix="units.")
    return _prefixed(UnitSelection, kwargs, "units.")


def _prefixed(cls: type, kwargs: dict[str, Any], prefix: str) -> Any:
    """Build ``cls(**kwargs)``; a validation error's field gets the TOML table prefix."""
    try:
        return cls(**kwargs)
    except AdapterError as error:
        field_name = error.field if error.field and error.field.startswith(prefix) else f"{prefix}{error.field}"
        raise AdapterError(error.problem, field=field_name, fix=error.fix) from None


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], *, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise AdapterError(
                f"unknown key {prefix}{key!r}" if not prefix else f"unknown key {key!r} in [{prefix.rstrip('.')}]",
                field=f"{prefix}{key}",
                fix=f"use only {', '.join(allowed)}",
            )


def _table(data: dict[str, Any], key: str, *, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data[key], dict):
        raise AdapterError(f"{prefix}{key} must be a table", field=f"{prefix}{key}",
                           fix=f"write it as [{prefix}{key}] with its keys below, or inline: {key} = {{ ... }}")  # fmt: skip
    return data[key]


def _typed(table: dict[str, Any], key: str, kind: type, *, prefix: str = "") -> Any:
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AdapterError(
            f"{prefix}{key} must be {'a number' if kind is float else 'an integer' if kind is int else 'a string'}, "
            f"not {value!r}",
            field=f"{prefix}{key}",
        )
    return value


def _typed_list(table: dict[str, Any], key: str, kind: type, *, prefix: str) -> list[Any]:
    values = table[key]
    if not isinstance(values, list):
        raise AdapterError(f"{prefix}{key} must be a list, not {values!r}", field=f"{prefix}{key}")
    return [_typed({key: value}, key, kind, prefix=prefix) for value in values]
