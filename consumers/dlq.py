"""Dead letters: records a consumer cannot decode or apply, parked with their story.

A dead letter keeps the original key, value, headers and timestamp, and adds the
headers Spring Kafka's DeadLetterPublishingRecoverer writes (binary ints and longs
big-endian, as Spring does), so existing DLT tooling can read ours. `flush` must
succeed before the consumer's offset moves past the record.
"""

from __future__ import annotations

import struct
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message, Producer

from ecom.errors import DeliveryFailed
from ecom.kafka import client_config

TIMESTAMP_TYPES = {TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}


def dead_letter_headers(
    message: Message, group: str, error: BaseException
) -> list[tuple[str, str | bytes | None]]:
    """Return the kafka_dlt-* headers describing where a record came from and why it failed."""
    kind, timestamp = message.timestamp()
    headers: list[tuple[str, str | bytes | None]] = [
        ("kafka_dlt-original-topic", (message.topic() or "").encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", message.partition() or 0)),
        ("kafka_dlt-original-offset", struct.pack(">q", message.offset() or 0)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", timestamp)),
        ("kafka_dlt-original-timestamp-type", TIMESTAMP_TYPES.get(kind, "CreateTime").encode()),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", _name(error).encode()),
        ("kafka_dlt-exception-message", str(error).encode()),
    ]
    if error.__cause__ is not None:
        headers.append(("kafka_dlt-exception-cause-fqcn", _name(error.__cause__).encode()))
    return headers


def _name(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


class DeadLetters:
    """Write failed records to a dead-letter topic, acknowledged by all replicas."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self._failures: list[str] = []
        self.sent = 0
        settings: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
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
            headers=original + dead_letter_headers(message, self.group, error),
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
