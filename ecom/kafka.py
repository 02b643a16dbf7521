"""confluent-kafka client settings shared by every client we create.

librdkafka's own log lines go to the `ecom.librdkafka` logger instead of stderr, so a
command prints one clear error instead of a screenful of connection retries.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from ecom.errors import KafkaUnavailable

LIBRDKAFKA_LOG = logging.getLogger("ecom.librdkafka")


def client_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Return the settings every client starts from."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "ecomstream",
        "logger": LIBRDKAFKA_LOG,
        "socket.connection.setup.timeout.ms": 5000,
    }
    config.update(overrides)
    return config


def admin_client(bootstrap: str) -> AdminClient:
    """Return an AdminClient for the cluster."""
    return AdminClient(client_config(bootstrap))


def kafka_error(what: str, error: BaseException) -> KafkaUnavailable:
    """Map a confluent-kafka error to KafkaUnavailable with a readable message."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        reason = error.args[0].str()
    else:
        reason = str(error)
    return KafkaUnavailable(f"{what}: {reason}")


def end_offsets(
    bootstrap: str, topics: list[str], timeout: float = 15.0
) -> dict[tuple[str, int], int]:
    """Return the log end offset of every partition of the given topics."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = admin.list_topics(timeout=timeout)
            wanted = {
                TopicPartition(topic, partition): OffsetSpec.latest()  # type: ignore[no-untyped-call]
                for topic in topics
                if (found := metadata.topics.get(topic)) is not None and found.error is None
                for partition in found.partitions
            }
            if not wanted:
                return {}
            futures = admin.list_offsets(wanted, request_timeout=timeout)
            return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
        except KafkaException as error:
            if not is_transient(error) or time.monotonic() > deadline:
                raise kafka_error(f"cannot read end offsets from {bootstrap}", error) from error
            time.sleep(0.2)


TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def is_transient(error: BaseException) -> bool:
    """Tell whether a Kafka error is worth retrying (leader moves, new topics, timeouts)."""
    if not isinstance(error, KafkaException) or not error.args:
        return False
    cause = error.args[0]
    return isinstance(cause, KafkaError) and (cause.retriable() or cause.code() in TRANSIENT)
