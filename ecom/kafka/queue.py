"""Share groups (KIP-932, "queues for Kafka"): records taken one by one, acknowledged
one by one, redelivered when released or when their taker dies.

A share group spreads the records of a partition over every member, so a topic with
2 partitions can keep 8 workers busy; each record is acquired by one member for a lock
time, and comes back to the group (its delivery count one higher) when that member
releases it, crashes, or lets the lock expire. There is no position per member to move:
the group has one start offset, and an accepted record is never delivered again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import AcknowledgeType, KafkaException, Message, ShareConsumer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from ecom.kafka.admin import Admin
from ecom.kafka.config import client_config
from ecom.kafka.errors import is_fatal, kafka_error

Verdict = Literal["accept", "release", "reject"]
_TYPES = {
    "accept": AcknowledgeType.ACCEPT,
    "release": AcknowledgeType.RELEASE,
    "reject": AcknowledgeType.REJECT,
}
log = logging.getLogger(__name__)
# librdkafka says so once per consumer at warning level; the module docstring says it.
logging.getLogger("ecom.librdkafka").addFilter(lambda r: "Preview" not in r.getMessage())


@dataclass(frozen=True)
class ShareGroupSettings:
    """The group's own settings, kept by the broker (group configs)."""

    start: str = "earliest"  # where a new group starts: earliest, latest
    lock_ms: int = 30_000  # how long a member may hold a record before it comes back
    delivery_limit: int = 5  # the broker archives a record delivered this often

    def entries(self) -> list[ConfigEntry]:
        values = {
            "share.auto.offset.reset": self.start,
            "share.record.lock.duration.ms": str(self.lock_ms),
            "share.delivery.count.limit": str(self.delivery_limit),
        }
        op = AlterConfigOpType.SET
        return [ConfigEntry(k, v, incremental_operation=op) for k, v in values.items()]


def configure_share_group(admin: Admin, group: str, settings: ShareGroupSettings) -> None:
    """Set a share group's configs (the group need not exist yet)."""
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=settings.entries())

    def request() -> None:
        for future in admin.admin.incremental_alter_configs([resource]).values():
            future.result()

    admin.call(f"configure the share group {group}", request)


class ShareQueue:
    """One member of a share group, acknowledging every record explicitly.

    Not thread-safe (neither is the consumer under it): one per thread."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], batch: int = 20) -> None:
        config = client_config(
            bootstrap,
            **{
                "group.id": group,
                "share.acknowledgement.mode": "explicit",
                "max.poll.records": batch,
            },
        )
        self.group = group
        self.consumer = ShareConsumer(config)
        try:
            self.consumer.subscribe(topics)
        except KafkaException as error:
            self.consumer.close()
            raise kafka_error(f"share group {group} cannot subscribe", error) from error

    def take(self, timeout: float) -> list[Message]:
        """The next records this member acquired (every earlier one must be settled)."""
        try:
            found = self.consumer.poll(timeout)
        except KafkaException as error:
            raise kafka_error(f"share group {self.group} cannot fetch", error) from error
        records = []
        for message in found:
            problem = message.error()
            if problem is None:
                records.append(message)
            elif is_fatal(problem):  # a _FATAL message error has fatal() False
                raise kafka_error(f"share group {self.group} failed", KafkaException(problem))
        return records

    def settle(self, message: Message, verdict: Verdict) -> None:
        """Record what becomes of one record; sent with the next commit or take."""
        self.consumer.acknowledge(message, _TYPES[verdict])

    def commit(self, timeout: float = 30.0) -> int:
        """Send the settled records' acknowledgements and wait for the broker; return
        how many partitions refused theirs (their records come back to the group, so
        the caller must be ready to see them again)."""
        try:
            results = self.consumer.commit_sync(timeout)
        except KafkaException as error:
            raise kafka_error(f"share group {self.group} cannot acknowledge", error) from error
        refused = {tp: e for tp, e in (results or {}).items() if e is not None}
        for partition, problem in refused.items():
            log.warning("share group %s: acknowledgements for %s-%d refused: %s", self.group,
                        partition.topic, partition.partition, problem)  # fmt: skip
        return len(refused)

    def close(self) -> None:
        """Leave the group; records still held go back to it."""
        self.consumer.close()


def delivery_count(message: Message) -> int:
    """How often the group has handed this record out, this time included."""
    count = message.delivery_count()
    return int(count) if count is not None else 1


@contextmanager
def share_queue(
    bootstrap: str, group: str, topics: list[str], batch: int = 20
) -> Iterator[ShareQueue]:
    """A share group member that leaves the group on the way out."""
    queue = ShareQueue(bootstrap, group, topics, batch)
    try:
        yield queue
    finally:
        queue.close()
