"""Fault injection for the crash tests, switched on only by an environment variable the
tests set (never by a CLI option):

    ECOM_FAULTS="crash-after-db-commit=3"

makes the process SIGKILL itself at the third time it reaches that point. Points are
named where they are placed (`faults.reach("crash-after-db-commit")`); a process without
ECOM_FAULTS pays one dict lookup per call.
"""

from __future__ import annotations

import os
import signal
from functools import cache

ENV = "ECOM_FAULTS"


@cache
def _armed() -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, count = item.strip().partition("=")
        if name:
            armed[name] = int(count or "1")
    return armed


def reach(point: str) -> None:
    """Count a pass through a crash point; SIGKILL this process when its count is up."""
    armed = _armed()
    if point not in armed:
        return
    armed[point] -= 1
    if armed[point] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
