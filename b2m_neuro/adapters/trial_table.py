"""The trials of a teacher spec: NWB intervals table(s) -> derived columns -> selected rows -> checked times.

:class:`TrialTable` reads the columns a :class:`~b2m_neuro.adapters.spec.TeacherSpec` names from one
intervals table, or from several stacked in the order the spec lists them (a column missing from
some is NaN or "" in their rows; the column ``interval_table`` names each row's table). It then
computes the derived columns in order (code maps, sums and expressions on every row), keeps the rows the
selection keeps, numbers the blocks of the kept rows, and checks the alignment and reaction
times of those rows. Every failure is an :class:`~b2m_neuro.errors.AdapterError` naming the file,
the column and the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from b2m_neuro.adapters.expressions import ExpressionError, evaluate
from b2m_neuro.adapters.spec import RESERVED_COORDS, CodeMap, ColumnExpression, ColumnSum, TeacherSpec, TrialBlocks
from b2m_neuro.errors import AdapterError

__all__ = ["TrialTable", "TABLE_COLUMN", "as_text"]

TABLE_COLUMN = "interval_table"  # derived column naming each row's table when several are stacked


class TrialTable:
    """The kept trials of ``tables`` (``[(name, pynwb TimeIntervals), ...]``) under ``spec``.

    Attributes
    ----------
    ids
        ``trial`` coordinate of each kept row: the table's row id (one table) or the position in
        the stacked tables (several).
    align, reaction_times
        Alignment time (s) and reaction time (s, None for a fixed post window) of each kept row.
    task
        Task column name -> values of the kept rows.
    span
        Seconds from the earliest start to the latest stop over every row of the tables (for the
        units' mean firing rates).
    """

    def __init__(self, tables: list[tuple[str, Any]], spec: TeacherSpec, file: Any) -> None:
        self.file, self.tables = file, tables
        self.where = " + ".join(name for name, _ in tables)  # the tables, as named in messages
        self._sizes = [len(table.id.data[:]) for _, table in tables]
        if sum(self._sizes) == 0:
            raise AdapterError("the intervals table has no rows", file=file, field=self.where)
        self._all_ids = np.asarray(tables[0][1].id.data[:]) if len(tables) == 1 else np.arange(sum(self._sizes))
        self._cache: dict[str, np.ndarray] = {}
        self._unmapped: dict[str, tuple[np.ndarray, str]] = {}  # code map -> (rows without a mapping, source)
        self._check_task_columns(spec)
        for name, derivation in spec.derive:
            if not isinstance(derivation, TrialBlocks):
                self._cache[name] = self._derive(name, derivation)
        self.span = float(np.nanmax(self._numbers("stop_time")) - np.nanmin(self._numbers("start_time")))
        rows = np.flatnonzero(self._selected(spec))
        self.ids = self._all_ids[rows]
        for name, derivation in spec.derive:
            if isinstance(derivation, TrialBlocks):
                self._cache[name] = _spread(np.arange(len(rows)) // derivation.size, rows, sum(self._sizes))
        self._check_mapped(rows)
        self.align = self._times(spec.align, rows, positive=False)
        self.reaction_times = None if spec.post.kind == "fixed" else self._times(spec.post.column, rows, positive=True)
        self.task = {name: self.column(name)[rows] for name in spec.task_columns}
        start, stop = self._times("start_time", rows, positive=False), self._times("stop_time", rows, positive=False)
        backwards = stop < start
        if backwards.any():
            raise AdapterError(
                f"{backwards.sum()} interval(s) stop before they start ({_rows(self.ids[backwards])})",
                file=file,
                field=f"{self.where}.stop_time",
                fix="correct or drop those rows: each stop_time must be at or after its start_time",
            )

    # ----------------------------------------------------------------- columns
    def has(self, name: str) -> bool:
        return (name in self._cache or name in ("start_time", "stop_time", TABLE_COLUMN)
                or any(name in table.colnames for _, table in self.tables))  # fmt: skip

    def column(self, name: str) -> np.ndarray:
        """Values of column ``name`` (the tables' own or derived) over every row of the stacked tables."""
        if name not in self._cache:
            self._cache[name] = self._read(name)
        return self._cache[name]

    def _read(self, name: str) -> np.ndarray:
        if name == TABLE_COLUMN:
            return np.repeat(np.array([table_name for table_name, _ in self.tables]), self._sizes)
        if not self.has(name):
            raise AdapterError(
                f"the {self.where} table has no column {name!r}; its columns are: {', '.join(self._colnames())}",
                file=self.file,
                field=f"{self.where}.{name}",
                fix="name an existing column in the spec (or derive it in [derive])",
            )
        parts = [self._read_one(table_name, table, name) if _has(table, name) else None for table_name, table in self.tables]
        present = [part for part in parts if part is not None]
        text = any(part.dtype.kind == "U" for part in present)
        filled = [part if part is not None else np.full(size, "" if text else np.nan)
                  for part, size in zip(parts, self._sizes)]  # fmt: skip
        if text:
            filled = [part.astype(str) for part in filled]
        return filled[0] if len(filled) == 1 else np.concatenate(filled)

    def _read_one(self, table_name: str, table: Any, name: str) -> np.ndarray:
        from hdmf.common import VectorIndex

        column = table[name]
        if isinstance(column, VectorIndex):
            raise AdapterError(
                f"column {name!r} holds lists (a ragged column) and cannot be a task variable",
                file=self.file, field=f"{table_name}.{name}",
            )
        values = np.asarray(column.data[:])
        return as_text(values) if values.dtype.kind in "SO" else values

    def _colnames(self) -> list[str]:
        return list(dict.fromkeys(name for _, table in self.tables for name in table.colnames))

    def _numbers(self, name: str) -> np.ndarray:
        values = self.column(name)
        if values.dtype.kind not in "iuf":
            raise AdapterError(
                f"column {name!r} must hold times in seconds, not {values.dtype} values",
                file=self.file, field=f"{self.where}.{name}",
            )
        return values.astype(np.float64)

    def _times(self, name: str, rows: np.ndarray, *, positive: bool) -> np.ndarray:
        """Times (s) of the kept ``rows`` in column ``name``, all finite (and > 0 if ``positive``)."""
        values = self._numbers(name)[rows]
        bad = ~np.isfinite(values) | ((values <= 0) if positive else False)
        if bad.any():
            problem = "missing, NaN or <= 0" if positive else "missing or NaN"
            raise AdapterError(
                f"{bad.sum()} trial(s) have {problem} values in column {name!r} ({_rows(self._all_ids[rows][bad])})",
                file=self.file,
                field=f"{self.where}.{name}",
                fix="drop those trials with [select] in the spec, or use a fixed post window",
            )
        return values

    # ----------------------------------------------------------------- task columns and derivations
    def _check_task_columns(self, spec: TeacherSpec) -> None:
        for name in spec.task_columns:
            if name in RESERVED_COORDS:
                raise AdapterError(
                    f"task column {name!r} clashes with an output coordinate", file=self.file, field="task_columns",
                    fix=f"task columns cannot be named {', '.join(RESERVED_COORDS)}",
                )
        derived = {name for name, _ in spec.derive}
        missing = [name for name in spec.task_columns if name not in derived and not self.has(name)]
        if missing:
            raise AdapterError(
                f"the {self.where} table lacks the task columns {missing}; its columns are: {', '.join(self._colnames())}",
                file=self.file,
                field="task_columns",
                fix="list only columns the table has (or derived ones) in the spec's task_columns "
                "(task_columns = [] keeps none)",
            )

    def _derive(self, name: str, derivation: CodeMap | ColumnSum | ColumnExpression) -> np.ndarray:
        field = f"derive.{name}"
        if isinstance(derivation, ColumnExpression):
            try:
                values = np.broadcast_to(evaluate(derivation.expression, self.column, boolean=False), (sum(self._sizes),))
            except ExpressionError as error:
                raise AdapterError(f"the expression {derivation.expression!r}: {error}", file=self.file, field=field,
                                   fix="compare and combine columns of matching kinds") from None  # fmt: skip
            return values.astype(np.int64) if values.dtype == bool else np.array(values)
        if isinstance(derivation, ColumnSum):
            total = np.zeros(sum(self._sizes))
            for sign, columns in ((1.0, derivation.plus), (-1.0, derivation.minus)):
                for column in columns:
                    values = self.column(column)
                    if values.dtype.kind not in "iufb":
                        raise AdapterError(f"{field} adds column {column!r}, which holds {values.dtype} values",
                                           file=self.file, field=field, fix="sum only numeric columns")  # fmt: skip
                    total += sign * values.astype(np.float64)
            return total
        source = self.column(derivation.column)
        numeric = source.dtype.kind in "iufb"
        result = np.full(len(source), "" if isinstance(derivation.values[0][1], str) else np.nan, dtype=object)
        mapped = np.zeros(len(source), dtype=bool)
        for key, value in derivation.values:
            hit = source == _as_key(key, numeric, field, derivation.column, self.file)
            result[hit], mapped[hit] = value, True
        if derivation.default is not None:
            result[~mapped] = derivation.default
        else:
            self._unmapped[name] = (~mapped, derivation.column)
        return _typed(result)

    def _check_mapped(self, rows: np.ndarray) -> None:
        """Refuse kept rows that a code map without a default could not map."""
        for name, (unmapped, source) in self._unmapped.items():
            bad = rows[unmapped[rows]]
            if len(bad):
                values = [str(v) for v in dict.fromkeys(self.column(source)[bad].tolist())][:10]
                raise AdapterError(
                    f"derive.{name}: the values {values} of column {source!r} have no mapping ({_rows(self._all_ids[bad])})",
                    file=self.file,
                    field=f"derive.{name}.values",
                    fix="add them to values, give a default, or drop those trials with [select]",
                )

    # ----------------------------------------------------------------- selection
    def _selected(self, spec: TeacherSpec) -> np.ndarray:
        keep = np.ones(sum(self._sizes), dtype=bool)
        selection = spec.select
        if selection.where:
            try:
                keep &= evaluate(selection.where, self.column)
            except ExpressionError as error:
                raise AdapterError(f"the expression {selection.where!r}: {error}", file=self.file, field="select.where",
                                   fix="compare columns with constants of their kind") from None  # fmt: skip
        for name, values in selection.keep:
            keep &= self._matches(name, values, "select.keep")
        for name, values in selection.drop:
            keep &= ~self._matches(name, values, "select.drop")
        if not keep.any():
            raise AdapterError("no trial passes the selection", file=self.file, field="select",
                               fix="widen [select] in the spec")  # fmt: skip
        return keep

    def _matches(self, name: str, values: tuple, field: str) -> np.ndarray:
        column = self.column(name)
        numeric = column.dtype.kind in "iufb"
        return np.isin(column, [_as_key(value, numeric, f"{field}.{name}", name, self.file) for value in values])


def _as_key(value: Any, numeric: bool, field: str, column: str, file: Any) -> Any:
    """A spec value to compare with a column's values: a number for a numeric column, else text."""
    if not numeric:
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AdapterError(f"{field}: {value!r} is not a number, but column {column!r} holds numbers", file=file,
                           field=field, fix=f"write the values of {column!r} as numbers") from None  # fmt: skip


def _typed(values: np.ndarray) -> np.ndarray:
    """An object array of mapped values as str, int or float."""
    if all(isinstance(v, str) for v in values):
        return values.astype(str)
    floats = values.astype(np.float64)
    whole = np.isfinite(floats).all() and np.all(floats == np.round(floats))
    return floats.astype(np.int64) if whole and all(isinstance(v, (int, np.integer)) for v in values) else floats


def _spread(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``values`` of the kept ``rows`` in an array over all ``n`` rows (-1 elsewhere)."""
    full = np.full(n, -1, dtype=np.int64)
    full[rows] = values
    return full


def _has(table: Any, name: str) -> bool:
    return name in table.colnames or name in ("start_time", "stop_time")


def as_text(values: Any) -> np.ndarray:
    """Text values as a str array, whether the file stores them as bytes or str."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def _rows(ids: np.ndarray) -> str:
    """``"rows 3, 17"``: the first ten row ids, and how many more."""
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return "rows " + ", ".join(str(r) for r in ids[:10]) + more
