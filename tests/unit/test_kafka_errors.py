"""Metadata requests give up at once on a cluster where nothing listens, and keep asking
one that is only slow."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from ecom.errors import KafkaUnavailable
from ecom.kafka.errors import metadata, note_client_error


class Client:
    """Stands in for a producer or admin client whose metadata requests all fail; its
    poll serves the error librdkafka would report meanwhile, if any."""

    def __init__(self, bootstrap: str, reported: list[int]) -> None:
        self.bootstrap = bootstrap
        self.reported = reported  # one error per poll, in turn
        self.asked = 0

    def list_topics(self, timeout: float, **_: Any) -> Any:
        self.asked += 1
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    def poll(self, _: float) -> None:
        if self.reported:
            note_client_error(self.bootstrap, KafkaError(self.reported.pop(0), "reported"))


def test_every_broker_down_fails_the_first_attempt() -> None:
    client = Client("127.0.0.1:1", [KafkaError._ALL_BROKERS_DOWN])
    with pytest.raises(KafkaUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        metadata(client, client.bootstrap, timeout=60)
    assert client.asked == 1


def test_a_cluster_that_is_only_slow_is_asked_again() -> None:
    slow = [KafkaError._TRANSPORT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN]
    client = Client("127.0.0.1:2", slow)
    with pytest.raises(KafkaUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:2"):
        metadata(client, client.bootstrap, timeout=60)
    assert client.asked == 3


def test_a_refused_password_fails_the_first_attempt_and_says_so() -> None:
    client = Client("127.0.0.1:3", [KafkaError._AUTHENTICATION])
    with pytest.raises(KafkaUnavailable, match="refused this client"):
        metadata(client, client.bootstrap, timeout=60)
    assert client.asked == 1
