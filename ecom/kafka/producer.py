"""The one producer of bytes: idempotent, acks=all, every delivery report checked.

A record Kafka did not acknowledge makes a later `produce` or `flush` raise
DeliveryFailed (or reaches the caller's callback as one): nothing is dropped silently.
Delivery reports are served every POLL_EVERY records and at `poll`/`flush`, so a failure
shows up to that many records later; whoever waits for an answer flushes or polls.
The event producer (producers/), the dead letters and the order flow all send through it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ecom import metrics
from ecom.errors import DeliveryFailed, KafkaRefused, KafkaUnavailable
from ecom.kafka.admin import Admin
from ecom.kafka.config import producer_config
from ecom.kafka.errors import fatal_cause, kafka_error, metadata, note_client_error
from ecom.kafka.security import current_service, principal

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
# A producer's fatal errors that mean its principal may not write at all.
_NOT_ALLOWED = {
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


class BytesProducer:
    """Send records and track every delivery."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        self.bootstrap = bootstrap
        self.service = current_service()  # the label of what it sends
        settings = {"error_cb": self._on_error} | overrides
        config = producer_config(bootstrap, **settings)
        self.delivery_timeout_s = int(config["delivery.timeout.ms"]) / 1000
        self._producer = Producer(config)
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self.fatal: str | None = None
        self._fatal: KafkaError | None = None
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
        try:  # a try costs nothing on this hot path; a context manager would
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
                    self._producer.poll(0.05)  # queue full: let deliveries drain first
            self._unpolled += 1
            if self._unpolled >= POLL_EVERY:  # serve delivery reports now and then
                self._unpolled = 0
                self._producer.poll(0)
        except (KafkaException, SystemError) as error:
            if (fatal := self._fatal_from(error)) is not None:
                raise fatal from error
            if isinstance(error, KafkaException):
                raise kafka_error(f"cannot publish to {topic}", error) from error
            raise

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports. A fatal error is kept (the next produce or flush raises
        it), not raised here: whoever serves reports (the command API's thread) goes on."""
        try:
            self._producer.poll(timeout)
        except (KafkaException, SystemError) as error:
            if self._fatal_from(error) is None:
                raise

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every queued record; raise DeliveryFailed if any was not acknowledged."""
        started = time.monotonic()
        with self._librdkafka():
            remaining = self._producer.flush(timeout)
        self.raise_failures()
        if remaining:
            waited = time.monotonic() - started
            raise DeliveryFailed(
                f"{remaining} record(s) not acknowledged by Kafka after {waited:.1f}s of "
                f"waiting (is {self.bootstrap} reachable, with enough in-sync replicas?); "
                "they may still be stored, now or later: a retry may publish them twice"
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

    def unwritable_topics(self, names: list[str], timeout: float = 10.0) -> dict[str, str]:
        """Return why this producer may not write each topic among names it may not
        (admin.MISSING, DENIED or READ_ONLY), to refuse before sending anything. Fails
        fast when the cluster does not answer or refuses this client."""
        with self._librdkafka():
            metadata(self._producer, self.bootstrap, timeout, not self._answered)
        self._answered = True
        return Admin(self.bootstrap, timeout).unwritable(names)

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
                self._failures.append(_failure(error, message, self.delivery_timeout_s))
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
                failure = _failure(error, message, self.delivery_timeout_s)
                on_outcome(DeliveryFailed(f"record not acknowledged: {failure}"))
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
            self._note_fatal(error)

    def _note_fatal(self, error: KafkaError) -> None:
        self._fatal = error
        self.fatal = str(error.str())

    @contextmanager
    def _librdkafka(self) -> Iterator[None]:
        """Map the fatal error confluent-kafka raises from a call (an idempotent producer
        refused its producer id, say) to ours. A delivery report served in the same
        call then fails with a SystemError caused by it: that is the same error."""
        try:
            yield
        except (KafkaException, SystemError) as error:
            if (fatal := self._fatal_from(error)) is None:
                raise
            raise fatal from error

    def _fatal_from(self, error: BaseException) -> KafkaUnavailable | None:
        """Return our error for a fatal one behind `error` (None if it is not one)."""
        fatal = fatal_cause(error)
        if fatal is None:
            return None
        self._note_fatal(fatal)
        return self._fatal_error()

    def _fatal_error(self) -> KafkaUnavailable:
        fatal = self._fatal
        if fatal is not None and fatal.code() in _NOT_ALLOWED:
            return KafkaRefused(
                f"Kafka at {self.bootstrap} does not let {principal(self.bootstrap)} write: "
                "an idempotent "
                f"producer needs IdempotentWrite on the cluster or WRITE on a topic "
                f"({fatal.str()})"
            )
        return DeliveryFailed(f"the producer hit a fatal error: {self.fatal}")

    def raise_failures(self) -> None:
        """Raise DeliveryFailed for deliveries that failed since the last call."""
        if self.fatal:
            raise self._fatal_error()
        if not self._failures:
            return
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise DeliveryFailed(f"{len(failures)} record(s) not acknowledged: {failures[0]}{more}")


def _failure(error: KafkaError, message: Message, delivery_timeout_s: float) -> str:
    failure = f"{message.topic()} key {_key(message)}: {error.str()}"
    if error.code() == KafkaError._MSG_TIMED_OUT:  # librdkafka gave up: it never sends it later
        failure += (
            f" after {delivery_timeout_s:.0f}s (its delivery timeout); it may still have been "
            "stored: a retry may publish it twice"
        )
    return failure


def _key(message: Message) -> str:
    key = message.key()
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)
