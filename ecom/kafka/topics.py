"""Read the live topics of a cluster and carry out a topic plan (ecom.topics_plan)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from ecom.errors import KafkaUnavailable
from ecom.kafka.admin import Admin
from ecom.kafka.errors import kafka_error
from ecom.topics_plan import LiveTopic, Plan, make_plan
from ecom.topology import Topology


class TopicAdmin(Admin):
    """Topic-level admin operations on one cluster."""

    def live_topics(self, names: Iterable[str] | None = None) -> dict[str, LiveTopic]:
        """Return the cluster's topics (all non-internal ones, or those named)."""
        metadata = self.metadata()
        topics = metadata.topics
        wanted = set(names) if names is not None else {n for n in topics if not n.startswith("__")}
        present = [name for name in wanted if name in topics and not topics[name].error]
        configs = self._configs(present)
        live = {}
        for name in present:
            if name not in configs:
                continue  # deleted while we looked
            partitions = topics[name].partitions.values()
            live[name] = LiveTopic(
                name=name,
                partitions=len(partitions),
                replication_factor=max((len(p.replicas) for p in partitions), default=0),
                configs=configs[name],
                under_replicated=sum(len(p.isrs) < len(p.replicas) for p in partitions),
            )
        return live

    def _configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        if not names:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
        result = {}
        for resource, future in self.admin.describe_configs(resources).items():
            try:
                entries = future.result()
            except KafkaException as error:
                if _unknown_topic(error):
                    continue
                raise kafka_error(f"cannot read configs of {resource.name}", error) from error
            result[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
        return result

    def execute(self, plan: Plan) -> None:
        """Carry out a plan without refusals: create, grow, then reconfigure."""
        assert not plan.refusals, "refused plans are never executed"
        creates = [
            NewTopic(c.topic, c.partitions, c.replication_factor, config=c.configs)
            for c in plan.changes
            if c.action == "create"
        ]
        grows = [
            NewPartitions(c.topic, c.partitions)
            for c in plan.changes
            if c.action == "add-partitions"
        ]
        alters = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                c.topic,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in c.configs.items()
                ],
            )
            for c in plan.changes
            if c.action == "alter-configs"
        ]
        # Validate every step on the brokers first, so a refusal leaves nothing half-done.
        for validate_only in (True, False):
            self._run(creates, grows, alters, validate_only)
        self.wait_until_ready({c.topic: c.partitions for c in plan.changes if c.partitions})

    def _run(
        self,
        creates: list[NewTopic],
        grows: list[NewPartitions],
        alters: list[ConfigResource],
        validate_only: bool,
    ) -> None:
        admin = self.admin
        if creates:
            created = admin.create_topics(
                creates, operation_timeout=30, validate_only=validate_only
            )
            _wait_all(created, "create topic")
        if grows:
            grown = admin.create_partitions(
                grows, operation_timeout=30, validate_only=validate_only
            )
            _wait_all(grown, "add partitions to")
        if alters:
            altered = admin.incremental_alter_configs(alters, validate_only=validate_only)
            _wait_all(altered, "alter configs of")

    def wait_until_ready(self, partitions: dict[str, int], timeout: float = 60.0) -> None:
        """Wait until every topic has its partitions, each answered by its leader."""
        deadline = time.monotonic() + timeout
        while partitions:
            topics = self.metadata().topics
            if all(_has_leaders(topics.get(name), count) for name, count in partitions.items()):
                # Leaders are assigned before they have the log: ask each for its offsets.
                self.log_ends(list(partitions))
                return
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"topics {sorted(partitions)} did not get leaders within {timeout:.0f}s"
                )
            time.sleep(0.2)

    def delete(self, names: list[str]) -> None:
        """Delete topics; topics already gone are fine."""
        if not names:
            return
        for name, future in self.admin.delete_topics(names, operation_timeout=30).items():
            try:
                future.result()
            except KafkaException as error:
                if not _unknown_topic(error):
                    raise kafka_error(f"could not delete topic {name}", error) from error


def _unknown_topic(error: KafkaException) -> bool:
    cause = error.args[0] if error.args else None
    return isinstance(cause, KafkaError) and cause.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def _has_leaders(topic: Any, count: int) -> bool:
    if topic is None or topic.error is not None:
        return False
    partitions = topic.partitions
    return len(partitions) >= count and all(p.leader >= 0 for p in partitions.values())


TOLERATED_ON_CREATE = (KafkaError.TOPIC_ALREADY_EXISTS, KafkaError.REQUEST_TIMED_OUT)


def _wait_all(futures: dict[Any, Any], what: str, tolerated: tuple[int, ...] = ()) -> None:
    for target, future in futures.items():
        name = getattr(target, "name", target)
        try:
            future.result()
        except KafkaException as error:
            cause = error.args[0] if error.args else None
            if isinstance(cause, KafkaError) and cause.code() in tolerated:
                continue
            raise kafka_error(f"could not {what} {name}", error) from error


@contextmanager
def scratch_topology(topology: Topology, bootstrap: str, label: str) -> Iterator[Topology]:
    """Create every topic of topics.yaml under a fresh prefix; delete them afterwards."""
    scratch = topology.with_prefix(f"{label}-{int(time.time())}-")
    admin = TopicAdmin(bootstrap)
    brokers = admin.broker_count()
    admin.execute(make_plan(scratch, {}, brokers, dev=brokers < 3))
    try:
        yield scratch
    finally:
        admin.delete([t.name for t in scratch.topics()])
