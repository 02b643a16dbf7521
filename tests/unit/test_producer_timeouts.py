"""A record not acknowledged in time: the message says how long, and that it may be stored."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from ecom.cli.produce import CLI_PRODUCER, WAIT_S
from ecom.errors import DeliveryFailed, KafkaUnavailable
from ecom.kafka import BytesProducer
from ecom.topology import Topology
from producers.api import DELIVERY_TIMEOUT_MS
from producers.producer import EventProducer
from schemas import StockAdjusted
from tests.support import REPO

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


def test_an_error_in_flight_is_not_replaced_by_the_close_after_it() -> None:
    """A file that failed part-way raised its report of what was published, and the
    producer's close then raised its own failure instead: the report was lost."""
    topology = Topology.load(REPO / "topics.yaml")
    settings: dict[str, Any] = {"delivery.timeout.ms": 300, "linger.ms": 0, "log_level": 0}
    with pytest.raises(KafkaUnavailable, match=r"^the report$"):
        _publish_then_fail(EventProducer(topology, NOWHERE, "/test", **settings))


def _publish_then_fail(producer: EventProducer) -> None:
    with producer:
        producer.publish(StockAdjusted(product_id="p-1", quantity=1))  # never delivered
        raise KafkaUnavailable("the report")
