"""What a fetch returns: the files of one dataset version, on disk or streamed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SourceFile:
    """One file of a fetched dataset.

    Attributes
    ----------
    path
        The file's path inside the dataset (forward slashes), e.g. ``"sub-P1/sub-P1_ecephys.nwb"``.
    size
        Size in bytes.
    sha256
        Hex SHA-256 of the content as the archive states it (or as computed here); ``""`` when
        neither knows it.
    local
        Where the file lies on disk, or None when it is streamed.
    url
        Where the archive serves the file, or None for a local folder.
    source
        The dataset version it belongs to (``"dandi:000004@0.220126.1852"``).
    """

    path: str
    size: int
    sha256: str
    local: Path | None = None
    url: str | None = None
    source: str = ""

    def record(self) -> dict[str, str]:
        """The file as a BIDS ``SourceDatasets`` entry: URL, version (the source) and sha256."""
        url = self.url if self.url is not None else self.local.resolve().as_uri()
        return {"URL": url, "Version": self.source, "sha256": self.sha256}

    @property
    def name(self) -> str:
        """The file name without folders."""
        return self.path.rsplit("/", 1)[-1]

    @contextlib.contextmanager
    def open_nwb(self) -> Iterator[Any]:
        """Open the file as a ``pynwb.NWBFile``, from disk or over HTTP range requests; closed on exit.

        Examples
        --------
        >>> with fetched.files[0].open_nwb() as nwbfile:  # doctest: +SKIP
        ...     rates = b2m_neuro.load_spikes(nwbfile, "coarse")
        """
        from b2m_neuro.sources.streaming import open_nwb

        with open_nwb(self.local if self.local is not None else self.url, label=self.path) as nwbfile:
            yield nwbfile


@dataclass(frozen=True)
class Fetched:
    """The files of one dataset version that a :func:`b2m_neuro.fetch` call selected.

    Attributes
    ----------
    source
        The resolved source, version included (``"dandi:000004@0.220126.1852"``).
    version
        The version fetched (a DANDI version, an OpenNeuro snapshot tag, ``"latest"`` or ``"local"``).
    root
        The local folder holding the files (the dataset's root), or None when streamed.
    files
        The selected files, sorted by path.
    """

    source: str
    version: str
    root: Path | None
    files: list[SourceFile] = field(default_factory=list)

    def __iter__(self) -> Iterator[SourceFile]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)
