"""The kafka_dlt-* headers of a dead letter, as Spring Kafka's DeadLetterPublishingRecoverer
writes them (ints and longs big-endian), so existing DLT tooling can read ours."""

from __future__ import annotations

import struct
from dataclasses import dataclass

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class Origin:
    """Where a failed record was read."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: str  # CreateTime or LogAppendTime
    group: str


def dead_letter_headers(origin: Origin, error: BaseException) -> Headers:
    """Return the headers saying where a record came from and why it failed."""
    headers: Headers = [
        ("kafka_dlt-original-topic", origin.topic.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", origin.partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", origin.offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", origin.timestamp_ms)),
        ("kafka_dlt-original-timestamp-type", origin.timestamp_type.encode()),
        ("kafka_dlt-original-consumer-group", origin.group.encode()),
        ("kafka_dlt-exception-fqcn", _name(error).encode()),
        ("kafka_dlt-exception-message", str(error).encode()),
    ]
    if error.__cause__ is not None:
        headers.append(("kafka_dlt-exception-cause-fqcn", _name(error.__cause__).encode()))
    return headers


def _name(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"
