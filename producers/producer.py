"""The one way events reach Kafka.

Keyed by the entity id topics.yaml names for each event type, encoded by the codec,
with CloudEvents headers, sent through the floor's delivery-tracked producer
(idempotent, acks=all): a record Kafka did not acknowledge makes the next `publish` or
`flush` raise DeliveryFailed. Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ecom.errors import DeliveryFailed, EcomError, KafkaRefused, KafkaUnavailable
from ecom.kafka import BytesProducer, Delivery, Outcome, OutcomeCallback
from ecom.kafka.admin import DENIED, MISSING
from ecom.kafka.security import principal
from ecom.topology import Topology
from schemas import Codec, Event, headers
from schemas.codec import check_source

__all__ = ["Delivery", "EventProducer", "Outcome", "OutcomeCallback", "Receipts"]


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
        self.source = check_source(source)  # before any client exists: nothing is sent
        self.codec = codec or Codec()
        self.producer = BytesProducer(bootstrap, **overrides)
        self._routes: dict[str, tuple[str, str]] = {}

    @property
    def acknowledged(self) -> int:
        return self.producer.acknowledged

    @property
    def fatal(self) -> str | None:
        """The producer's fatal error, if it hit one (it cannot send any more)."""
        return self.producer.fatal

    def publish(self, event: Event, on_outcome: OutcomeCallback | None = None) -> None:
        """Queue one event.

        Without on_outcome, a failed delivery is raised by a later publish() or flush().
        With it, the callback receives the Delivery or the DeliveryFailed, and owns it.
        """
        topic, key_field = self._route(event.event_type)
        self.producer.produce(
            topic,
            self.codec.encode(event),
            str(getattr(event, key_field)),
            headers(event, self.source),
            on_outcome=on_outcome,
        )

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
        if not isinstance(outcomes[0], Delivery):
            raise outcomes[0]
        return outcomes[0]

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every queued event; raise DeliveryFailed if any was not acknowledged."""
        self.producer.flush(timeout)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports."""
        self.producer.poll(timeout)

    def check_topics(self, event_types: set[str], timeout: float = 10.0) -> None:
        """Refuse, before sending anything, if a topic these events go to is missing or
        this principal may not write it."""
        names = {self.topology.for_event(t).name: t for t in sorted(event_types)}
        problems = self.producer.unwritable_topics(list(names), timeout)
        if not problems:
            return
        where = {name: f"topic {name} (for {names[name]})" for name in problems}
        who = principal(self.bootstrap)
        if missing := [where[name] for name, why in problems.items() if why == MISSING]:
            raise KafkaUnavailable(
                f"{_listed(missing)} does not exist on {self.bootstrap}; create it with "
                "`ecom topics apply`; nothing was sent"
            )
        if denied := [where[name] for name, why in problems.items() if why == DENIED]:
            raise KafkaRefused(
                f"{_listed(denied)} does not exist on {self.bootstrap}, or {who} may not "
                "use it (Topic authorization failed: Kafka does not tell a principal that "
                "may not see a topic whether it exists); nothing was sent"
            )
        read_only = [where[name] for name in problems]
        raise KafkaRefused(
            f"{who} may not write {_listed(read_only)}: Topic authorization failed; "
            "nothing was sent"
        )

    def close(self, timeout: float = 120.0) -> None:
        """Flush; the producer must not be used afterwards."""
        self.flush(timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
            return
        with suppress(EcomError):  # what was queued gets its answer; the error in flight is news
            self.close()


class Receipts:
    """Which of a batch's records Kafka acknowledged and which it did not, so that a
    failure says what was published: a retry of the whole batch would publish that again.
    `label` names a record by its place in the batch (a file's line, say)."""

    SHOWN = 5
    _SENT, _ACKNOWLEDGED, _FAILED = 0, 1, 2

    def __init__(self, label: Callable[[int], str] = lambda index: f"record {index + 1}") -> None:
        self.label = label
        self._states = bytearray()  # one byte per record sent: compact for big batches
        self.acknowledged = 0
        self.failed: list[DeliveryFailed] = []

    @property
    def sent(self) -> int:
        return len(self._states)

    def track(self) -> Callable[[Outcome], None]:
        """Return the outcome callback of the next record sent."""
        index = len(self._states)
        self._states.append(self._SENT)

        def record(outcome: Outcome) -> None:
            if isinstance(outcome, Delivery):
                self._states[index] = self._ACKNOWLEDGED
                self.acknowledged += 1
            else:
                self._states[index] = self._FAILED
                self.failed.append(outcome)

        return record

    def check(self) -> None:
        """Raise DeliveryFailed, with the report, if a record was not acknowledged."""
        if self.failed:
            raise DeliveryFailed(f"{self.failed[0]}; {self.report()}")

    def report(self) -> str:
        """Say how many records were published, and which were not."""
        parts = [f"{self.acknowledged} of {self.sent} record(s) sent were acknowledged (published)"]
        if self.failed:
            parts.append(f"{len(self.failed)} not: {self._labels(self._FAILED)}")
        unanswered = self.sent - self.acknowledged - len(self.failed)
        if unanswered:
            shown = self._labels(self._SENT)
            parts.append(f"{unanswered} unanswered, which may still be stored: {shown}")
        return "; ".join(parts)

    def _labels(self, state: int) -> str:
        indexes = [index for index, s in enumerate(self._states) if s == state]
        shown = ", ".join(self.label(index) for index in indexes[: self.SHOWN])
        more = len(indexes) - self.SHOWN
        return f"{shown} and {more} more" if more > 0 else shown


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
