"""Atomic writes, content hashes and JSON sidecars."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from b2m_neuro.errors import B2MError


def sha256(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's content, read in chunks."""
    return digests(path, ("sha256",), chunk_size=chunk_size)["sha256"]


def digests(path: str | os.PathLike, algorithms: tuple[str, ...], *, chunk_size: int = 1 << 20) -> dict[str, str]:
    """The hex digests (``hashlib`` names, e.g. ``("md5", "sha256")``) of a file's content, read once in chunks."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def read_json_object(path: Path, *, error: type[B2MError], fix: str) -> dict:
    """The JSON object in ``path`` (UTF-8, with or without a byte-order mark); ``error`` naming the
    file and ``fix`` when it is not valid JSON or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"the file is not valid JSON ({problem})", file=path, field="file", fix=fix) from None
    if not isinstance(value, dict):
        raise error("the file does not hold a JSON object", file=path, field="file", fix=fix)
    return value


def read_toml(path: Path, *, error: type[B2MError], what: str) -> dict:
    """The TOML table in ``path``; ``error`` (field ``spec``) naming the file when it is missing or not
    valid TOML. ``what`` names the file's kind in the message (``"teacher spec"``)."""
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} file not found", file=path, field="spec", fix="check the path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as problem:
        raise error(f"not a valid TOML file ({problem})", file=path, field="spec") from None


def check_writable_target(path: str | os.PathLike, *, overwrite: bool, error: type[B2MError] = B2MError) -> Path:
    """Check that ``path`` may be written: its folder exists and it is new or ``overwrite`` is set."""
    path = Path(path)
    if not path.parent.is_dir():
        raise error(
            "the output folder does not exist",
            file=path.parent,
            field="path",
            fix=f"create it first (mkdir -p {path.parent}) or choose another output path",
        )
    if path.exists() and not overwrite:
        raise error(
            "the output file already exists",
            file=path,
            field="overwrite",
            fix="pass overwrite=True (--overwrite on the command line) or choose another path",
        )
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    Works for files and folders. A failure (or a kill) leaves no half-written ``path``;
    the temporary name starts with ``.`` and ends in ``.partial``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
