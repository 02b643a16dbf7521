"""A record not acknowledged in time: the message says how long, and that it may be stored."""

from __future__ import annotations

import re
import time

import pytest

from ecom.cli.produce import CLI_PRODUCER, WAIT_S
from ecom.errors import DeliveryFailed
from ecom.kafka import BytesProducer
from producers.api import DELIVERY_TIMEOUT_MS

NOWHERE = "127.0.0.1:1"  # nothing listens: librdkafka gives up after its delivery timeout


def test_a_flush_that_gives_up_says_how_long_it_waited_and_that_records_may_be_stored() -> None:
    producer = BytesProducer(NOWHERE, **{"delivery.timeout.ms": 60_000, "log_level": 0})
    producer.produce("orders", b"x", "o-1")
    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failed:
        producer.flush(1.5)
    waited = time.monotonic() - started
    message = str(failed.value)
    said = re.search(r"after ([0-9.]+)s of waiting", message)
    assert said is not None, message
    assert 1.5 <= float(said[1]) <= waited + 0.1
    assert "may still be stored" in message


def test_a_record_librdkafka_gave_up_on_says_when_and_that_it_may_be_stored() -> None:
    producer = BytesProducer(NOWHERE, **{"delivery.timeout.ms": 1000, "log_level": 0})
    outcomes: list[object] = []
    producer.produce("orders", b"x", "o-1", on_outcome=outcomes.append)
    producer.flush(10)
    (failed,) = outcomes
    assert isinstance(failed, DeliveryFailed)
    assert "Message timed out after 1s (its delivery timeout)" in str(failed)
    assert "may still have been stored" in str(failed)


def test_the_cli_waits_for_librdkafka_answer_as_long_as_the_command_api() -> None:
    """The CLI's records get the command API's delivery timeout (not the 120 s default
    of bulk producers), and the CLI waits past it: every record has its answer."""
    assert CLI_PRODUCER["delivery.timeout.ms"] == DELIVERY_TIMEOUT_MS
    assert WAIT_S * 1000 > DELIVERY_TIMEOUT_MS
