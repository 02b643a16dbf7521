"""Consumer groups on the cluster: list and describe them, read and move their offsets.

The planning rules live in ecom.offset_plan; this module fetches what they need and
applies a plan. What a group's offsets are tied to (a projection's view, a stream app's
tables) is ecom.topology's business.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from ecom.kafka.admin import Admin, Partition
from ecom.kafka.errors import error_code, kafka_error, reason
from ecom.offset_plan import LogState

RESETTABLE = ("EMPTY", "DEAD", "UNKNOWN")
NOT_EMPTY = "it still has members"


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


class GroupAdmin(Admin):
    """Admin requests about consumer groups."""

    def groups(self) -> list[tuple[str, str, str]]:
        """Return (group, state, type) of every consumer group, sorted by name."""
        self.metadata()  # a cluster that does not answer fails here, not as an empty list
        result = self.call(
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
            found = self.call(f"describe group {group}", request)
        except Exception as error:
            if error_code(error) == KafkaError.GROUP_ID_NOT_FOUND:
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

        answer = self.call(f"read the offsets of group {group}", request)
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions
            if tp.offset >= 0 and tp.error is None
        }

    def log_state(
        self, group: str, partitions: list[Partition], at_ms: int | None = None
    ) -> LogState:
        """Fetch what a plan is made from: log bounds, the group's commits and a
        timestamp lookup."""
        state = LogState(
            earliest=self.starts(partitions),
            latest=self.ends(partitions),
            committed=self.committed(group),
        )
        if at_ms is not None:
            state.by_time.update(self.at_time(partitions, at_ms))
        return state

    def alter(self, group: str, offsets: dict[Partition, int]) -> None:
        """Commit new offsets for an inactive group."""

        def request() -> Any:
            moved = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
            asked = [ConsumerGroupTopicPartitions(group, moved)]
            futures = self.admin.alter_consumer_group_offsets(asked, request_timeout=self.timeout)
            return futures[group].result()

        answer = self.call(f"move the offsets of group {group}", request)
        failed = [tp for tp in answer.topic_partitions if tp.error is not None]
        if failed:
            first = failed[0]
            raise kafka_error(f"cannot move {first.topic}-{first.partition}", first.error)

    def delete(self, groups: list[str], wait_s: float = 0.0) -> dict[str, str]:
        """Delete groups (consumer or share); return why any could not go. A group that is
        already gone is fine. One that still has members is tried again for up to wait_s:
        static members (our workers, runners) do not leave when they stop, the broker
        drops them when their session times out."""
        deadline = time.monotonic() + wait_s
        failed = self._delete_once(groups)
        while any(why == NOT_EMPTY for why in failed.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            failed = self._delete_once(list(failed))
        return failed

    def _delete_once(self, groups: list[str]) -> dict[str, str]:
        if not groups:
            return {}
        futures = self.call(
            "delete groups",
            lambda: self.admin.delete_consumer_groups(groups, request_timeout=self.timeout),
        )
        failed = {}
        for group, future in futures.items():
            try:
                future.result()
            except Exception as error:  # noqa: BLE001 - reported to the caller, group by group
                code = error_code(error)
                if code == KafkaError.NON_EMPTY_GROUP:
                    failed[group] = NOT_EMPTY
                elif code != KafkaError.GROUP_ID_NOT_FOUND:
                    failed[group] = reason(error)
        return failed

    def delete_prefixed(self, prefix: str, wait_s: float = 0.0) -> dict[str, str]:
        """Delete every group whose name starts with prefix (see delete)."""
        names = [name for name, _, _ in self.groups() if name.startswith(prefix)]
        return self.delete(names, wait_s)


def _name(value: Any) -> str:
    return str(getattr(value, "name", value or "UNKNOWN"))
