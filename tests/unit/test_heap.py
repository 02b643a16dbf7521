"""ecom.heap: full collections made rare inside the block, the thresholds back after."""

from __future__ import annotations

import gc
import threading

from ecom.heap import FULL_EVERY, few_full_collections


def test_full_collections_are_rare_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with few_full_collections():
        young, middle, full = gc.get_threshold()
        assert (young, middle) == before[:2]
        assert full == max(FULL_EVERY, before[2])
    assert gc.get_threshold() == before


def test_the_last_holder_to_leave_restores() -> None:
    before = gc.get_threshold()
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with few_full_collections():
            entered.set()
            leave.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    assert entered.wait(10)
    with few_full_collections():
        pass
    assert gc.get_threshold()[2] == max(FULL_EVERY, before[2])  # the other still holds it
    leave.set()
    other.join(10)
    assert gc.get_threshold() == before


def test_a_threshold_someone_else_set_meanwhile_stays() -> None:
    before = gc.get_threshold()
    try:
        with few_full_collections():
            gc.set_threshold(5000, 20, 30)
        assert gc.get_threshold() == (5000, 20, 30)
    finally:
        gc.set_threshold(*before)
