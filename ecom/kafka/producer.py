"""The one producer of bytes: idempotent, acks=all, every delivery report checked.

A record Kafka did not acknowledge makes a later `produce` or `flush` raise
DeliveryFailed (or reaches the caller's callback as one): nothing is dropped silently.
Delivery reports are served every POLL_EVERY records and at `poll`/`flush`, so a failure
shows up to that many records later; whoever waits for an answer flushes or polls.
The event producer (producers/), the dead letters and the order flow all send through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ecom import metrics
from ecom.errors import DeliveryFailed
from ecom.kafka.config import producer_config
from ecom.kafka.errors import is_fatal, kafka_error, metadata, note_client_error, reason
from ecom.kafka.security import current_service

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class Delivery:
    """Where Kafka stored a record."""

    topic: str
    partition: int
    offset: int
    key: str


Outcome = Delivery | DeliveryFailed
OutcomeCallback = Callable[[Outcome], None]
DeliveryReport = Callable[[KafkaError | None, Message], None]


POLL_EVERY = 100


class BytesProducer:
    """Send records and track every delivery."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        self.bootstrap = bootstrap
        self.service = current_service()  # the label of what it sends
        settings = {"error_cb": self._on_error} | overrides
        self._producer = Producer(producer_config(bootstrap, **settings))
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self.fatal: str | None = None
        self.acknowledged = 0
        self._produced: dict[str, Any] = {}  # topic -> its counter (labels() costs ~2 us)
        self._unpolled = 0
        self._answered = False  # whether a metadata request was ever answered

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int = -1,
        timestamp: int = 0,
        on_outcome: OutcomeCallback | None = None,
    ) -> None:
        """Queue one record.

        Without on_outcome, a failed delivery is raised by a later produce() or flush().
        With it, the callback receives the Delivery or the DeliveryFailed, and owns it.
        """
        self.raise_failures()
        report = self._report if on_outcome is None else self._reporter(on_outcome)
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    on_delivery=report,
                    timestamp=timestamp,
                    headers=headers,
                )
                break
            except BufferError:
                self._poll(0.05)  # queue full: let deliveries drain first
                self.raise_failures()
            except KafkaException as error:
                raise kafka_error(f"cannot publish to {topic}", error) from error
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:  # serve delivery reports now and then, not per record
            self._unpolled = 0
            self._poll(0)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports. A fatal error is kept in `fatal` (the next produce or
        flush raises it), not raised here: whoever serves reports goes on serving them."""
        self._poll(timeout)

    def _poll(self, timeout: float) -> None:
        try:
            self._producer.poll(timeout)
        except KafkaException as error:
            self._note_fatal(error)

    def _note_fatal(self, error: KafkaException) -> None:
        """Keep a fatal error confluent-kafka raised (an idempotent producer refused its
        producer id, say); raise any other."""
        cause = error.args[0] if error.args else None
        if not isinstance(cause, KafkaError) or not is_fatal(cause):
            raise error
        self.fatal = reason(cause)

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every queued record; raise DeliveryFailed if any was not acknowledged."""
        try:
            remaining = self._producer.flush(timeout)
        except KafkaException as error:
            self._note_fatal(error)
            remaining = len(self._producer)
        self.raise_failures()
        if remaining:
            raise DeliveryFailed(
                f"{remaining} record(s) not acknowledged by Kafka within {timeout:.0f}s "
                f"(is {self.bootstrap} reachable?)"
            )

    def in_flight(self) -> int:
        """Return how many records await their delivery report."""
        return len(self._producer)

    def answers(self, timeout: float = 2.0) -> bool:
        """Tell whether the cluster answers a metadata request now."""
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    def missing_topics(self, names: list[str], timeout: float = 10.0) -> list[str]:
        """Return the topics among names that do not exist (fail fast before sending)."""
        answer = metadata(self._producer, self.bootstrap, timeout, not self._answered)
        self._answered = True
        return [
            name
            for name in names
            if (found := answer.topics.get(name)) is None or found.error is not None
        ]

    def close(self, timeout: float = 120.0) -> None:
        """Flush; the producer must not be used afterwards."""
        self.flush(timeout)

    def __enter__(self) -> BytesProducer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- delivery reports ------------------------------------------------------------

    def _report(self, error: KafkaError | None, message: Message) -> None:
        self._count(error, message)
        if error is not None:
            with self._lock:
                self._failures.append(_failure(error, message))
        else:
            self.acknowledged += 1

    def _count(self, error: KafkaError | None, message: Message) -> None:
        topic = message.topic() or ""
        if error is not None:
            metrics.DELIVERIES_FAILED.labels(self.service, topic).inc()
            return
        counter = self._produced.get(topic)
        if counter is None:
            counter = self._produced[topic] = metrics.RECORDS_PRODUCED.labels(self.service, topic)
        counter.inc()

    def _reporter(self, on_outcome: OutcomeCallback) -> DeliveryReport:
        def report(error: KafkaError | None, message: Message) -> None:
            self._count(error, message)
            if error is not None:
                on_outcome(DeliveryFailed(f"record not acknowledged: {_failure(error, message)}"))
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
        note_client_error(self.bootstrap, error)
        if error.fatal():
            self.fatal = error.str()

    def raise_failures(self) -> None:
        """Raise DeliveryFailed for deliveries that failed since the last call."""
        if self.fatal:
            raise DeliveryFailed(f"the producer hit a fatal error: {self.fatal}")
        if not self._failures:
            return
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise DeliveryFailed(f"{len(failures)} record(s) not acknowledged: {failures[0]}{more}")


def _failure(error: KafkaError, message: Message) -> str:
    return f"{message.topic()} key {_key(message)}: {error.str()}"


def _key(message: Message) -> str:
    key = message.key()
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)
