"""Progress bars for long work, silenced with ``progress=False``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], *, description: str, total: int | None = None, progress: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar on stderr, or silently when ``progress`` is False."""
    if not progress:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, console=Console(stderr=True))
