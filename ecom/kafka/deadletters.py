"""Dead letters: records a consumer cannot decode or handle, parked with their story.

A dead letter keeps the original key, value, headers and timestamp, plus the
kafka_dlt-* headers Spring Kafka's DeadLetterPublishingRecoverer writes (ints and longs
big-endian), so existing DLT tooling can read ours. The projections and the order flow
both send through `DeadLetters`; a caller must see a dead letter acknowledged before its
consumer's offset moves past the record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from ecom.kafka.producer import BytesProducer, Headers, OutcomeCallback


@dataclass(frozen=True)
class Failed:
    """A record that could not be handled, and where it was read."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: str  # CreateTime or LogAppendTime
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def of(cls, message: Message) -> Failed:
        """Return a confluent-kafka message as a failed record."""
        kind, timestamp = message.timestamp()
        found = message.headers() or []
        headers = list(found.items()) if isinstance(found, dict) else list(found)
        key = message.key()
        return cls(
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
            timestamp,
            "LogAppendTime" if kind == TIMESTAMP_LOG_APPEND_TIME else "CreateTime",
            key.encode() if isinstance(key, str) else key,
            message.value(),
            headers,
        )


def dead_letter_headers(failed: Failed, group: str, error: BaseException) -> Headers:
    """Return the headers saying where a record came from and why it failed."""
    headers: Headers = [
        ("kafka_dlt-original-topic", failed.topic.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", failed.partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", failed.offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", failed.timestamp_ms)),
        ("kafka_dlt-original-timestamp-type", failed.timestamp_type.encode()),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", _name(error).encode()),
        ("kafka_dlt-exception-message", str(error)[:4000].encode()),
    ]
    if error.__cause__ is not None:
        headers.append(("kafka_dlt-exception-cause-fqcn", _name(error.__cause__).encode()))
    return headers


def _name(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


class DeadLetters:
    """Write failed records to one dead-letter topic, acknowledged by all replicas."""

    def __init__(
        self,
        producer: BytesProducer,
        topic: str,
        group: str,
        marks: Headers | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.group = group
        self.marks: Headers = list(marks or [])  # extra headers, such as the replay mark
        self.sent = 0

    def send(
        self, failed: Failed, error: BaseException, on_outcome: OutcomeCallback | None = None
    ) -> None:
        """Queue one dead letter; its delivery is checked like any other record's."""
        self.producer.produce(
            self.topic,
            failed.value,
            failed.key,
            headers=failed.headers + dead_letter_headers(failed, self.group, error) + self.marks,
            timestamp=max(failed.timestamp_ms, 0),
            on_outcome=on_outcome,
        )
        self.sent += 1

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued dead letter is acknowledged, or raise DeliveryFailed."""
        self.producer.flush(timeout)
