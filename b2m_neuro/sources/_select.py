"""Which files of a dataset a fetch takes: path globs and BIDS entities (subject, session, task)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence


def as_patterns(include: str | Sequence[str] | None) -> list[str]:
    """``include`` as a list of glob patterns (``["*"]`` for everything)."""
    if include is None:
        return ["*"]
    return [include] if isinstance(include, str) else list(include)


def selected(path: str, patterns: Sequence[str], *, subject: str | None = None, session: str | None = None,
             task: str | None = None) -> bool:
    """Whether ``path`` matches one of ``patterns`` and the entities asked for.

    An entity filter applies to files that carry that entity (``sub-01/...``, ``..._task-rest_...``);
    files without it (``dataset_description.json``, ``participants.tsv``) are kept, so a BIDS
    dataset stays valid. ``*`` in a pattern also matches ``/``, as on the DANDI archive.
    """
    if not any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
        return False
    for key, wanted in (("sub", subject), ("ses", session), ("task", task)):
        found = _entity(path, key)
        if wanted is not None and found is not None and found != wanted.removeprefix(f"{key}-"):
            return False
    return True


def _entity(path: str, key: str) -> str | None:
    match = re.search(rf"(?:^|[/_]){key}-([A-Za-z0-9]+)", path)
    return None if match is None else match.group(1)
