"""What a batch's failure says: which records were published, which were not."""

from __future__ import annotations

import pytest

from ecom.errors import DeliveryFailed
from ecom.kafka import Delivery
from producers.producer import Receipts


def _delivered(key: str) -> Delivery:
    return Delivery("orders", 0, 1, key)


def test_a_failure_names_its_records_and_counts_the_published_ones() -> None:
    receipts = Receipts(lambda index: f"line {index * 2 + 1}")
    tracks = [receipts.track() for _ in range(5)]
    for number in (0, 1, 3):
        tracks[number](_delivered(f"o-{number}"))
    tracks[2](DeliveryFailed("record not acknowledged: inventory key p-1: refused"))
    with pytest.raises(DeliveryFailed) as failed:
        receipts.check()
    assert str(failed.value) == (
        "record not acknowledged: inventory key p-1: refused; 3 of 5 record(s) sent were "
        "acknowledged (published); 1 not: line 5; 1 unanswered, which may still be "
        "stored: line 9"
    )


def test_a_long_list_is_cut_short() -> None:
    receipts = Receipts()
    for _ in range(8):
        receipts.track()(DeliveryFailed("no"))
    assert receipts.report().endswith("8 not: record 1, record 2, record 3, record 4, "
                                      "record 5 and 3 more")  # fmt: skip


def test_a_clean_batch_passes() -> None:
    receipts = Receipts()
    receipts.track()(_delivered("o-1"))
    receipts.check()
