"""Dead letters of the projection runners: records they cannot decode or apply.

A dead letter keeps the original key, value, headers and timestamp, plus the
kafka_dlt-* headers of ecom.deadletters. `flush` must succeed before the consumer's
offset moves past the record.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message, Producer

from ecom.deadletters import Origin, dead_letter_headers
from ecom.errors import DeliveryFailed
from ecom.kafka import client_config

TIMESTAMP_TYPES = {TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}


def origin_of(message: Message, group: str) -> Origin:
    """Return where a consumed record came from."""
    kind, timestamp = message.timestamp()
    return Origin(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        timestamp,
        TIMESTAMP_TYPES.get(kind, "CreateTime"),
        group,
    )


class DeadLetters:
    """Write failed records to a dead-letter topic, acknowledged by all replicas."""

    def __init__(
        self, bootstrap: str, topic: str, group: str, marks: list[tuple[str, bytes]] | None = None
    ) -> None:
        self.topic = topic
        self.group = group
        # extra headers, such as the replay mark
        self.marks: list[tuple[str, str | bytes | None]] = list(marks or [])
        self._failures: list[str] = []
        self.sent = 0
        settings: dict[str, Any] = {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
        self._producer = Producer(client_config(bootstrap, **settings))

    def send(self, message: Message, error: BaseException) -> None:
        """Queue one dead letter."""
        found = message.headers() or []
        original = list(found.items()) if isinstance(found, dict) else list(found)
        _, timestamp = message.timestamp()
        self._producer.produce(
            self.topic,
            key=message.key(),
            value=message.value(),
            headers=original
            + dead_letter_headers(origin_of(message, self.group), error)
            + self.marks,
            timestamp=max(timestamp, 0),
            on_delivery=self._delivered,
        )

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued dead letter is acknowledged, or raise."""
        remaining = self._producer.flush(timeout)
        if self._failures or remaining:
            first = self._failures[0] if self._failures else f"{remaining} still in flight"
            self._failures.clear()
            raise DeliveryFailed(f"dead letters to {self.topic} not acknowledged: {first}")

    def _delivered(self, error: Any, _: Message) -> None:
        if error is None:
            self.sent += 1
        else:
            self._failures.append(error.str())
