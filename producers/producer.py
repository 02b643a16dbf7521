"""The one way events reach Kafka.

Idempotent, acks=all, keyed by the entity id topics.yaml names for each event type.
Every delivery report is checked: a record Kafka did not acknowledge makes the next
`publish` or `flush` raise DeliveryFailed. Nothing is dropped silently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ecom.errors import DeliveryFailed, KafkaUnavailable
from ecom.kafka import client_config, kafka_error
from ecom.topology import Topology
from schemas import Codec, Event, headers

# Measured with `ecom bench produce` (see README): with acks=all every produce request
# costs three brokers CPU, so fewer, fuller batches (linger 50 ms) more than double the
# rate of 10 ms. Latency-sensitive callers (the command API) pass LOW_LATENCY.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    # The Java client's (and aiokafka's, so faust's) key hash: every client must put one
    # entity's events on one partition. librdkafka's own default hashes differently.
    "partitioner": "murmur2_random",
    "linger.ms": 50,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "delivery.timeout.ms": 120_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    # A topic that is missing should fail in seconds, not the default 30.
    "topic.metadata.propagation.max.ms": 5_000,
}


LOW_LATENCY: dict[str, Any] = {"linger.ms": 5}


@dataclass(frozen=True)
class Delivery:
    """Where Kafka stored an event."""

    topic: str
    partition: int
    offset: int
    key: str


Outcome = Delivery | DeliveryFailed
OutcomeCallback = Callable[[Outcome], None]


class EventProducer:
    """Publish events to their topics, keyed by entity id, acknowledged by all replicas."""

    def __init__(
        self,
        topology: Topology,
        bootstrap: str,
        source: str = "/ecomstream/cli",
        codec: Codec | None = None,
        **overrides: Any,
    ) -> None:
        self.topology = topology
        self.bootstrap = bootstrap
        self.source = source
        self.codec = codec or Codec()
        settings = PRODUCER_DEFAULTS | {"error_cb": self._on_error} | overrides
        self._producer = Producer(client_config(bootstrap, **settings))
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._fatal: str | None = None
        self.acknowledged = 0
        self._routes: dict[str, tuple[str, str]] = {}

    # -- publishing ----------------------------------------------------------------

    def publish(self, event: Event, on_outcome: OutcomeCallback | None = None) -> None:
        """Queue one event.

        Without on_outcome, a failed delivery is raised by a later publish() or flush().
        With it, the callback receives the Delivery or the DeliveryFailed, and owns it.
        """
        self._raise_failures()
        topic, key_field = self._route(event.event_type)
        key = str(getattr(event, key_field))
        value = self.codec.encode(event)
        callback = self._report if on_outcome is None else self._reporter(on_outcome)
        record_headers = headers(event, self.source)
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=record_headers, on_delivery=callback
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # queue full: let deliveries drain first
            except KafkaException as error:
                raise kafka_error(f"cannot publish {event.event_type}", error) from error
        self._producer.poll(0)

    def _route(self, event_type: str) -> tuple[str, str]:
        """Return the topic name and key field of an event type (cached)."""
        route = self._routes.get(event_type)
        if route is None:
            topic = self.topology.for_event(event_type)
            route = self._routes[event_type] = (topic.name, topic.key_field(event_type))
        return route

    def publish_and_wait(self, event: Event, timeout: float = 30.0) -> Delivery:
        """Publish one event and wait for Kafka to acknowledge it."""
        outcomes: list[Outcome] = []
        self.publish(event, outcomes.append)
        self.flush(timeout)
        if isinstance(outcomes[0], DeliveryFailed):
            raise outcomes[0]
        return outcomes[0]

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every queued event; raise DeliveryFailed if any was not acknowledged."""
        remaining = self._producer.flush(timeout)
        self._raise_failures()
        if remaining:
            raise DeliveryFailed(
                f"{remaining} event(s) not acknowledged by Kafka within {timeout:.0f}s "
                f"(is {self.bootstrap} reachable?)"
            )

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports."""
        self._producer.poll(timeout)

    def check_topics(self, event_types: set[str], timeout: float = 10.0) -> None:
        """Fail fast, before sending anything, if a needed topic is missing."""
        try:
            metadata = self._producer.list_topics(timeout=timeout)
        except KafkaException as error:
            raise kafka_error(f"cannot reach Kafka at {self.bootstrap}", error) from error
        for event_type in sorted(event_types):
            name = self.topology.for_event(event_type).name
            found = metadata.topics.get(name)
            if found is None or found.error is not None:
                raise KafkaUnavailable(
                    f"topic {name} (for {event_type}) does not exist on {self.bootstrap}; "
                    "create it with `ecom topics apply`"
                )

    def close(self, timeout: float = 120.0) -> None:
        """Flush; the producer must not be used afterwards."""
        self.flush(timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- delivery reports ------------------------------------------------------------

    def _report(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            with self._lock:
                self._failures.append(_failure(error, message))
        else:
            self.acknowledged += 1

    def _reporter(
        self, on_outcome: OutcomeCallback
    ) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                on_outcome(DeliveryFailed(f"event not acknowledged: {_failure(error, message)}"))
                return
            self.acknowledged += 1
            on_outcome(
                Delivery(
                    message.topic() or "",
                    message.partition() or 0,
                    message.offset() or 0,
                    _key(message),
                )
            )

        return report

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error.str()

    def _raise_failures(self) -> None:
        if self._fatal:
            raise DeliveryFailed(f"the producer hit a fatal error: {self._fatal}")
        if not self._failures:
            return
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise DeliveryFailed(f"{len(failures)} event(s) not acknowledged: {failures[0]}{more}")


def _failure(error: KafkaError, message: Message) -> str:
    return f"{message.topic()} key {_key(message)}: {error.str()}"


def _key(message: Message) -> str:
    key = message.key()
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)
