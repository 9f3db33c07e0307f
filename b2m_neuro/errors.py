"""One exception family for every user mistake b2m_neuro can detect.

Each message names the file, the field and what to do about it, so a user never has to read a
traceback from inside h5py, pynwb, mne or torch to learn what went wrong.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "B2MError",
    "SimulationError",
    "ConversionError",
    "SourceError",
    "AdapterError",
    "EmbeddingError",
    "DerivativeError",
    "TrainingError",
    "SweepError",
]


class B2MError(Exception):
    """Base class of all b2m_neuro errors.

    Parameters
    ----------
    problem
        What is wrong, in one sentence.
    file
        The file or folder concerned, if any.
    field
        The field, column, option or argument concerned, if any.
    fix
        What the user should do about it.

    Examples
    --------
    >>> err = B2MError("spike times are not sorted", file="s1.nwb", field="units[3].spike_times",
    ...                fix="sort each unit's spike times")
    >>> print(err)
    s1.nwb: units[3].spike_times: spike times are not sorted. Fix: sort each unit's spike times.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | PathLike | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem.rstrip(".")
        self.file = None if file is None else str(file)
        self.field = field
        self.fix = None if fix is None else fix.rstrip(".")
        super().__init__(self._message())

    def _message(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        text = f"{where}: {self.problem}." if where else f"{self.problem}."
        if self.fix:
            text += f" Fix: {self.fix}."
        return text


class SimulationError(B2MError):
    """Invalid parameters for a simulated session."""


class ConversionError(B2MError):
    """A lab recording cannot be converted to NWB or BIDS."""


class SourceError(B2MError):
    """A public archive (DANDI, OpenNeuro) or local source cannot be read."""


class AdapterError(B2MError):
    """An NWB or BIDS recording does not fit the teacher spec."""


class EmbeddingError(B2MError):
    """Brain embeddings cannot be computed from the given sessions."""


class DerivativeError(B2MError):
    """A derivative dataset is missing, malformed or tampered with."""


class TrainingError(B2MError):
    """A student cannot be trained with the given derivative and options."""


class SweepError(B2MError):
    """A sweep grid or results store is invalid."""
