"""A local folder (a BIDS dataset, a folder of NWB files) through the same interface as the archives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from b2m_neuro._util.files import sha256
from b2m_neuro.errors import SourceError
from b2m_neuro.sources._files import Fetched, SourceFile
from b2m_neuro.sources._select import selected


def fetch_local(folder: Path, *, patterns: Sequence[str], entities: dict) -> Fetched:
    """The files of ``folder`` that the selection takes, in place (nothing is copied)."""
    if not folder.is_dir():
        raise SourceError("the folder does not exist", file=folder, field="source",
                          fix="give an existing folder, or dandi:<id>[@<version>] / openneuro:<id>[@<snapshot>]")
    root = folder.resolve()
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if not relative.startswith(".") and selected(relative, patterns, **entities):
            files.append(SourceFile(relative, path.stat().st_size, sha256(path), path, None, f"local:{root}"))
    if not files:
        raise SourceError("no file of the folder matches the selection", file=folder, field="include",
                          fix="choose other include globs or filters")
    return Fetched(f"local:{root}", "local", root, files)
