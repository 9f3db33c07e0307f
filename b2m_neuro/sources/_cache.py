"""The local cache of fetched files and its manifest (source, version, path, sha256, size)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from b2m_neuro._util.files import atomic_path
from b2m_neuro.sources._files import SourceFile



def cache_root(cache: str | os.PathLike | None) -> Path:
    """The cache folder: ``cache``, else ``$B2M_NEURO_CACHE``, else ``$XDG_CACHE_HOME/b2m_neuro``
    (``~/.cache/b2m_neuro``)."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get("B2M_NEURO_CACHE"):
        return Path(os.environ["B2M_NEURO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "b2m_neuro"


def manifest_path(root: Path) -> Path:
    """Where the manifest of the cache folder ``root`` lies."""
    return root.with_name(f"{root.name}.manifest.json")


def provenance(path: str | os.PathLike) -> dict[str, str] | None:
    """The ``SourceDatasets`` entry of a file that a fetch put in a cache folder (found through the
    manifest beside one of its parent folders), or None for any other file."""
    path = Path(path).resolve()
    for folder in path.parents:
        if not folder.name:  # the file system's root
            return None
        manifest = manifest_path(folder)
        if manifest.is_file():
            stored = json.loads(manifest.read_text())
            relative = path.relative_to(folder).as_posix()
            entry = stored.get("files", {}).get(relative)
            if entry is None:
                return None
            return SourceFile(relative, entry["size"], entry["sha256"], path, entry.get("url"),
                              stored.get("source", "")).record()
    return None


class Manifest:
    """What one dataset version's cache folder holds, kept in ``<version>.manifest.json`` beside the
    folder (outside it, so the folder stays exactly the dataset and passes its validators).

    Each file is recorded with its path, sha256, size, URL and ``identity``: what the archive says
    changes with the content (DANDI: the sha256; S3: the object's version id). A file counts as cached
    when the manifest lists it with the archive's current identity and the file on disk has the
    listed size; the manifest is rewritten atomically after each file.
    """

    def __init__(self, root: Path, *, source: str, version: str, server: str) -> None:
        self.root = root
        self.header = {"source": source, "version": version, "server": server}
        self.path = manifest_path(root)
        stored = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.files: dict[str, dict] = stored.get("files", {}) if stored.get("server") == server else {}

    def cached(self, path: str, size: int, identity: str) -> bool:
        entry = self.files.get(path)
        local = self.root / path
        return (entry is not None and entry.get("identity") == identity and local.is_file()
                and local.stat().st_size == size)

    def add(self, file: SourceFile, *, identity: str) -> None:
        self.files[file.path] = {"sha256": file.sha256, "size": file.size, "url": file.url, "identity": identity}
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({**self.header, "files": self.files}, indent=1, sort_keys=True))
