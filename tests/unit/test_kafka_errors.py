"""Metadata requests give up at once on a cluster where nothing listens or that refuses
us, keep asking one that is only slow, and are not fooled by old reports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from ecom.errors import KafkaRefused, KafkaUnavailable
from ecom.kafka.errors import is_refusal, metadata, note_client_error, nothing_listens

DOWN, TRANSPORT, REFUSED = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
                            KafkaError._AUTHENTICATION)  # fmt: skip


class Client:
    """Stands in for a producer or admin client whose metadata requests all fail. Each
    poll serves the next error librdkafka queued (None: nothing queued)."""

    def __init__(self, bootstrap: str, queued: list[int | None], text: str = "reported") -> None:
        self.bootstrap = bootstrap
        self.queued = queued
        self.text = text
        self.asked = 0

    def list_topics(self, timeout: float, **_: Any) -> Any:
        self.asked += 1
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    def poll(self, _: float) -> None:
        code = self.queued.pop(0) if self.queued else None
        if code is not None:
            note_client_error(self.bootstrap, KafkaError(code, self.text))


def test_every_broker_down_fails_the_first_attempt(listener: str) -> None:
    client = Client(listener, [None, DOWN])
    with pytest.raises(KafkaUnavailable, match=f"cannot reach Kafka at {listener}"):
        metadata(client, client.bootstrap, timeout=60, fresh=True)
    assert client.asked == 1


def test_a_refused_password_fails_the_first_attempt_and_says_so(listener: str) -> None:
    client = Client(listener, [None, REFUSED])
    with pytest.raises(KafkaRefused, match="refused this client"):
        metadata(client, client.bootstrap, timeout=60)
    assert client.asked == 1


@pytest.fixture
def listener() -> Iterator[str]:
    """Something listening on loopback (it never answers a request): a slow cluster."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_a_cluster_that_only_failed_to_answer_is_asked_again(listener: str) -> None:
    client = Client(listener, [None, TRANSPORT, TRANSPORT, DOWN])
    with pytest.raises(KafkaUnavailable, match=f"cannot reach Kafka at {listener}"):
        metadata(client, client.bootstrap, timeout=60)
    assert client.asked == 3


def test_a_report_queued_before_the_call_does_not_end_it(listener: str) -> None:
    client = Client(listener, [DOWN, TRANSPORT, DOWN])
    with pytest.raises(KafkaUnavailable):
        metadata(client, client.bootstrap, timeout=60)
    assert client.asked == 2, "the old report was served first and ignored"


@pytest.fixture
def closed() -> str:
    """A loopback address where nothing listens."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        return f"127.0.0.1:{server.getsockname()[1]}"


def test_nothing_listening_fails_a_fresh_clients_first_attempt(closed: str) -> None:
    """A fresh client may have said "all brokers down" before the call (its one report):
    where nothing accepts a connection, the first failed attempt ends the wait."""
    client = Client(closed, [DOWN, TRANSPORT])
    with pytest.raises(KafkaUnavailable, match=f"cannot reach Kafka at {closed}"):
        metadata(client, client.bootstrap, timeout=60, fresh=True)
    assert client.asked == 1


def test_a_client_that_had_answers_waits_on_though_its_bootstrap_is_gone(closed: str) -> None:
    """It knows the other brokers: one bootstrap server down says nothing of them."""
    client = Client(closed, [DOWN, TRANSPORT, TRANSPORT])
    with pytest.raises(KafkaUnavailable):
        metadata(client, client.bootstrap, timeout=1.2)
    assert client.asked > 1


def test_an_address_without_a_port_is_probed_at_the_default_port(
    listener: str, closed: str
) -> None:
    listening_port, closed_port = int(listener.split(":")[1]), int(closed.split(":")[1])
    assert not nothing_listens("127.0.0.1", default_port=listening_port)
    assert nothing_listens("127.0.0.1", default_port=closed_port)
    assert nothing_listens(f"{closed},127.0.0.1", default_port=closed_port)
    assert not nothing_listens(f"{closed},{listener}"), "one listening is enough"
    assert not nothing_listens("not an address:x"), "unreadable: keep waiting"


def test_a_silent_cluster_is_asked_until_the_timeout(listener: str) -> None:
    client = Client(listener, [])
    with pytest.raises(KafkaUnavailable, match=f"cannot reach Kafka at {listener}"):
        metadata(client, client.bootstrap, timeout=0)
    assert client.asked == 1


@pytest.mark.parametrize(
    ("code", "refused"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, True),  # a broker said no
        (KafkaError.INVALID_REQUEST, True),
        (REFUSED, True),  # authentication failed
        (DOWN, False),  # nothing answered: worth asking again later
        (TRANSPORT, False),
        (KafkaError._TIMED_OUT, False),
        (KafkaError.NOT_LEADER_FOR_PARTITION, False),  # transient, a broker's code
    ],
)
def test_a_refusal_is_the_cluster_saying_no_not_a_connection_lost(code: int, refused: bool) -> None:
    assert is_refusal(KafkaException(KafkaError(code))) is refused


def test_a_handshake_cut_by_a_broker_going_down_is_no_refusal(listener: str) -> None:
    # Seen in the kill test while a broker restarted: the worker took it for a bad password.
    lost = "SASL SCRAM-SHA-512 mechanism handshake failed: Local: Broker transport failure"
    client = Client(listener, [None, REFUSED], lost)
    with pytest.raises(KafkaUnavailable) as raised:
        metadata(client, client.bootstrap, timeout=1.2)
    assert not isinstance(raised.value, KafkaRefused)
    assert client.asked > 1, "given up at once, as for a refusal"
    assert not is_refusal(KafkaException(KafkaError(REFUSED, lost)))
