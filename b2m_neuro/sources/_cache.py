"""The local cache of fetched files and its manifest (source, version, path, sha256, size)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from b2m_neuro._util.files import atomic_path
from b2m_neuro.sources._files import SourceFile

MANIFEST = "b2m_manifest.json"


def cache_root(cache: str | os.PathLike | None) -> Path:
    """The cache folder: ``cache``, else ``$B2M_NEURO_CACHE``, else ``$XDG_CACHE_HOME/b2m_neuro``
    (``~/.cache/b2m_neuro``)."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get("B2M_NEURO_CACHE"):
        return Path(os.environ["B2M_NEURO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "b2m_neuro"


class Manifest:
    """What one dataset version's cache folder holds, kept in ``b2m_manifest.json`` beside the files.

    A file counts as cached when the manifest lists it with the archive's current digest and the
    file on disk has the listed size; the manifest is rewritten atomically after each file.
    """

    def __init__(self, root: Path, *, source: str, version: str, server: str) -> None:
        self.root = root
        self.header = {"source": source, "version": version, "server": server}
        path = root / MANIFEST
        stored = json.loads(path.read_text()) if path.is_file() else {}
        self.files: dict[str, dict] = stored.get("files", {}) if stored.get("server") == server else {}

    def cached(self, file: SourceFile) -> bool:
        entry = self.files.get(file.path)
        local = self.root / file.path
        return (entry is not None and entry["sha256"] == file.sha256 and local.is_file()
                and local.stat().st_size == file.size)

    def add(self, file: SourceFile) -> None:
        self.files[file.path] = {"sha256": file.sha256, "size": file.size, "url": file.url}
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / MANIFEST) as tmp:
            tmp.write_text(json.dumps({**self.header, "files": self.files}, indent=1, sort_keys=True))
