"""Python's cyclic garbage collector, tuned for processes that hold large heaps: the
replay, the projection runner and the flow workers.

A projection's row cache holds millions of objects and replaces many of them with every
batch. CPython starts a full collection each time a quarter of the old heap is new, so
a replay walked every cached object again and again: a third of an orders replay's time
(`ecom bench replay`). Our rows and events form no reference cycles, so full collections
find nearly nothing. Young collections still run as usual (they catch most of the
short-lived cycles exceptions, futures and callbacks make); only full ones become a
hundred times rarer, so a cycle that outlives the young generations waits longer.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FULL_EVERY = 1000  # young-collection rounds between full ones (CPython's default: 10)

_lock = threading.Lock()
_holders = 0
_saved = 0  # the full-collection threshold before the first holder raised it
_raised = 0  # what it raised it to


@contextmanager
def few_full_collections() -> Iterator[None]:
    """Make full collections rare while the block runs (nested or in several threads:
    the first to enter raises the threshold, the last to leave puts it back, unless
    someone else changed it meanwhile). From Python 3.14 the collector is incremental
    and ignores this threshold: the block then changes nothing."""
    global _holders, _saved, _raised
    with _lock:
        if _holders == 0:
            young, middle, _saved = gc.get_threshold()
            _raised = max(FULL_EVERY, _saved)
            gc.set_threshold(young, middle, _raised)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            young, middle, full = gc.get_threshold()
            if _holders == 0 and full == _raised:
                gc.set_threshold(young, middle, _saved)
