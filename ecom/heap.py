"""Python's cyclic garbage collector, tuned for processes that hold large heaps.

A projection's row cache holds millions of objects and replaces many of them with every
batch. CPython starts a full collection each time a quarter of the old heap is new, so
a replay walked every cached object again and again: a third of an orders replay's time
(`ecom bench replay`). Our rows and events form no reference cycles, so full collections
find nearly nothing. Young collections still run as usual (they catch the short-lived
cycles exceptions and callbacks make); only full ones become a hundred times rarer.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FULL_EVERY = 1000  # young-collection rounds between full ones (CPython's default: 10)

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def few_full_collections() -> Iterator[None]:
    """Make full collections rare while the block runs (nested or in several threads:
    the first to enter sets it, the last to leave restores the thresholds)."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            young, middle, _ = _saved
            gc.set_threshold(young, middle, max(FULL_EVERY, _saved[2]))
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.set_threshold(*_saved)
