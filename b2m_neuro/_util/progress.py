"""Progress bars for long work, silenced with ``progress=False``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
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


@contextlib.contextmanager
def progress_bar(*, description: str, total: int, progress: bool = True) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr moved by the function it yields (``update(done, status="")``:
    steps done so far, and a short status shown after the description, such as the current loss),
    for work that reports its own progress through a callback; a no-op when ``progress`` is False.

    Outside a terminal rich draws the bar once, when it stops, instead of one update per line.
    """
    if not progress:
        yield lambda done, status="": None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, status: str = "") -> None:
            bar.update(task, completed=done, description=f"{description} ({status})" if status else description)

        yield update
        bar.update(task, completed=total)
