"""Consumer groups on the cluster: list, describe, read and move their offsets.

The planning rules live in ecom.offset_plan; this module fetches what they need and
applies a plan. A reset is refused while the group has members, and for a group that
holds state built from its offsets (a projection, a faust app with changelog topics),
since moving the offsets alone would leave state and offsets disagreeing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from ecom.errors import BadInput
from ecom.kafka import admin_client, is_transient, kafka_error
from ecom.offset_plan import LogState, Partition

T = TypeVar("T")
RESETTABLE = ("EMPTY", "DEAD", "UNKNOWN")
PROJECTION_GROUP = "ecom-projection-"


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    instance_id: str | None
    partitions: list[Partition]


@dataclass(frozen=True)
class GroupInfo:
    group: str
    state: str
    members: list[Member]

    @property
    def active(self) -> bool:
        return bool(self.members) or self.state not in RESETTABLE


class GroupAdmin:
    """Admin requests about consumer groups, retried through leader moves."""

    def __init__(self, bootstrap: str, timeout: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.admin: AdminClient = admin_client(bootstrap)

    def _call(self, what: str, request: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return request()
            except KafkaException as error:
                if not is_transient(error) or time.monotonic() > deadline:
                    raise kafka_error(f"cannot {what}", error) from error
                time.sleep(0.2)

    def groups(self) -> list[tuple[str, str, str]]:
        """Return (group, state, type) of every consumer group, sorted by name."""
        result = self._call(
            "list consumer groups",
            lambda: self.admin.list_consumer_groups(request_timeout=self.timeout).result(),
        )
        return sorted(
            (g.group_id, _name(getattr(g, "state", None)), _name(getattr(g, "type", None)))
            for g in result.valid
        )

    def describe(self, group: str) -> GroupInfo:
        """Return a group's state and members (a group that never existed is DEAD)."""

        def request() -> Any:
            future = self.admin.describe_consumer_groups([group], request_timeout=self.timeout)
            return future[group].result()

        try:
            found = self._call(f"describe group {group}", request)
        except Exception as error:
            if _code(error) == KafkaError.GROUP_ID_NOT_FOUND:
                return GroupInfo(group, "DEAD", [])
            raise
        members = [
            Member(
                m.member_id,
                m.client_id,
                m.host,
                m.group_instance_id,
                sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions),
            )
            for m in found.members
        ]
        return GroupInfo(group, _name(found.state), members)

    def committed(self, group: str) -> dict[Partition, int]:
        """Return the group's committed offsets (partitions without one are left out)."""

        def request() -> Any:
            asked = [ConsumerGroupTopicPartitions(group)]
            futures = self.admin.list_consumer_group_offsets(asked, request_timeout=self.timeout)
            return futures[group].result()

        answer = self._call(f"read the offsets of group {group}", request)
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions
            if tp.offset >= 0 and tp.error is None
        }

    def partitions(self, topics: dict[str, list[int] | None]) -> list[Partition]:
        """Expand a scope (topic -> partitions, None for all) and check it exists."""
        metadata = self._call("read topic metadata", lambda: self.admin.list_topics(timeout=15))
        chosen: list[Partition] = []
        for topic, wanted in topics.items():
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                raise BadInput(f"topic {topic} does not exist")
            live = sorted(found.partitions)
            missing = [p for p in wanted or [] if p not in live]
            if missing:
                raise BadInput(f"topic {topic} has no partition {missing[0]} (it has {len(live)})")
            chosen += [(topic, p) for p in (wanted if wanted is not None else live)]
        return chosen

    def log_state(
        self, group: str, partitions: list[Partition], at_ms: int | None = None
    ) -> LogState:
        """Fetch what a plan is made from: log bounds, the group's commits and a
        timestamp lookup."""
        state = LogState(
            earliest=self._list_offsets(partitions, OffsetSpec.earliest()),  # type: ignore[no-untyped-call]
            latest=self.ends(partitions),
            committed=self.committed(group),
        )
        if at_ms is not None:
            state.by_time.update(self.at_time(partitions, at_ms))
        return state

    def ends(self, partitions: list[Partition]) -> dict[Partition, int]:
        """Return the log end offset of each partition."""
        return self._list_offsets(partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]

    def at_time(self, partitions: list[Partition], at_ms: int) -> dict[Partition, int]:
        """Return each partition's first offset at or after a time (-1: none that late)."""
        return self._list_offsets(partitions, OffsetSpec.for_timestamp(at_ms))

    def _list_offsets(self, partitions: list[Partition], spec: Any) -> dict[Partition, int]:
        if not partitions:
            return {}

        def request() -> dict[Partition, int]:
            asked = {TopicPartition(t, p): spec for t, p in partitions}
            futures = self.admin.list_offsets(asked, request_timeout=self.timeout)
            return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

        return self._call("list offsets", request)

    def alter(self, group: str, offsets: dict[Partition, int]) -> None:
        """Commit new offsets for an inactive group."""

        def request() -> Any:
            moved = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
            asked = [ConsumerGroupTopicPartitions(group, moved)]
            futures = self.admin.alter_consumer_group_offsets(asked, request_timeout=self.timeout)
            return futures[group].result()

        answer = self._call(f"move the offsets of group {group}", request)
        failed = [tp for tp in answer.topic_partitions if tp.error is not None]
        if failed:
            first = failed[0]
            raise kafka_error(f"cannot move {first.topic}-{first.partition}", first.error)

    def delete_records(self, before: dict[Partition, int]) -> None:
        """Delete every record below the given offsets (emptying a changelog)."""

        def request() -> None:
            asked = [TopicPartition(t, p, o) for (t, p), o in sorted(before.items())]
            for future in self.admin.delete_records(asked, request_timeout=self.timeout).values():
                future.result()

        self._call("delete records", request)

    def topic_names(self) -> set[str]:
        metadata = self._call("read topic metadata", lambda: self.admin.list_topics(timeout=15))
        return set(metadata.topics)


def state_holder(group: str, prefix: str, topics: set[str]) -> str | None:
    """Describe the state a group's offsets are tied to, or None for a plain group."""
    if group.startswith(prefix + PROJECTION_GROUP):
        name = group.removeprefix(prefix + PROJECTION_GROUP)
        return f"projection {name} (its view stores the offsets it reflects)"
    if changelogs := changelogs_of(group, topics):
        return f"stream app {group} (tables in {', '.join(changelogs)})"
    return None


def changelogs_of(group: str, topics: set[str]) -> list[str]:
    """Return the changelog topics of a stream app (faust, Kafka Streams) named group."""
    return sorted(t for t in topics if t.startswith(group + "-") and t.endswith("-changelog"))


def _name(value: Any) -> str:
    return str(getattr(value, "name", value or "UNKNOWN"))


def _code(error: BaseException) -> Any:
    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, KafkaException) and cause.args and isinstance(cause.args[0], KafkaError):
        return cause.args[0].code()
    return None
