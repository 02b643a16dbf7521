"""Progress of long work: a bar on a terminal, nothing otherwise.

Long commands (`ecom simulate`, `ecom replay`, the benchmarks) draw a rich progress bar
on stderr when it is a terminal; in a pipe or a log they stay quiet while working and
print one line per phase when it is done, which is the caller's business.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


def _nothing(_: int) -> None:
    return None


def on_terminal() -> bool:
    """Tell whether progress bars are drawn (stderr is a terminal)."""
    return sys.stderr.isatty()


@contextmanager
def progress(label: str, total: int | None, shown: bool = True) -> Iterator[Advance]:
    """Yield a function that moves the bar on by n; the bar goes when the block ends."""
    if not (shown and on_terminal()):
        yield _nothing
        return
    from rich.console import Console  # imported only when a bar is drawn
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
