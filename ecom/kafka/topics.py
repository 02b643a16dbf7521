"""Read the live topics (and ACLs) of a cluster and carry out a topic plan
(ecom.topics_plan)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from ecom.errors import BadInput, EcomError, KafkaUnavailable
from ecom.kafka.admin import Admin
from ecom.kafka.errors import kafka_error, reason
from ecom.kafka.groups import GroupAdmin
from ecom.topics_plan import Acl, LiveTopic, Plan, make_plan, wanted_acls
from ecom.topology import Topology

LOG = logging.getLogger("ecom.kafka")
GROUPS_GONE_S = 60.0  # a static member's session (10 s here, 45 s by default) ends

_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "describe": AclOperation.DESCRIBE,
    "alter-configs": AclOperation.ALTER_CONFIGS,
}


class TopicAdmin(Admin):
    """Topic-level admin operations on one cluster."""

    def plan(self, topology: Topology, dev: bool = False) -> Plan:
        """Compare topics.yaml with this cluster: its topics, and its ACLs if it has an
        authorizer."""
        names = [t.name for t in topology.topics()]
        live = self.live_topics(names)
        # Topics that are all new have no ACLs yet worth reading (granting one twice is
        # harmless): ask only whether the cluster has an authorizer.
        acls = self.live_acls(probe=not live)
        return make_plan(topology, live, self.broker_count(), dev, acls)

    def live_acls(self, probe: bool = False) -> set[Acl] | None:
        """Return the cluster's ALLOW rules we know how to name (None: no authorizer);
        with probe, an empty set if it has one."""
        if not self.has_authorizer():
            return None
        if probe:
            return set()
        # confluent-kafka's stubs want strings where None means "any".
        everything = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY,  # type: ignore[arg-type]
            None, None, AclOperation.ANY, AclPermissionType.ANY,  # type: ignore[arg-type]
        )  # fmt: skip
        try:
            bindings = self.admin.describe_acls(everything, request_timeout=30).result()
        except KafkaException as error:
            raise kafka_error("cannot read the cluster's ACLs", error) from error
        return {acl for binding in bindings if (acl := _acl(binding)) is not None}

    def has_authorizer(self) -> bool:
        """Tell whether the brokers authorize requests (authorizer.class.name is set)."""
        broker = min(self.metadata().brokers)
        resource = ConfigResource(ConfigResource.Type.BROKER, str(broker))
        try:
            entries = self.admin.describe_configs([resource])[resource].result()
        except KafkaException as error:
            raise kafka_error("cannot read the brokers' settings", error) from error
        entry = entries.get("authorizer.class.name")
        return bool(entry is not None and entry.value)

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
        self._grant([c.acl for c in plan.changes if c.acl is not None and c.action == "add-acl"])
        self.revoke([c.acl for c in plan.changes if c.acl is not None and c.action == "remove-acl"])

    def _grant(self, acls: list[Acl]) -> None:
        if not acls:
            return
        bindings = [
            AclBinding(
                _RESOURCES[acl.resource], acl.name, _PATTERNS[acl.pattern], acl.principal, "*",
                _OPERATIONS[acl.operation], AclPermissionType.ALLOW,
            )
            for acl in acls
        ]  # fmt: skip
        _wait_all(self.admin.create_acls(bindings, request_timeout=30), "grant")

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

    def revoke(self, acls: list[Acl]) -> None:
        """Delete these ACLs (those already gone are fine)."""
        if not acls:
            return
        filters = [
            AclBindingFilter(
                _RESOURCES[acl.resource], acl.name, _PATTERNS[acl.pattern], acl.principal, "*",
                _OPERATIONS[acl.operation], AclPermissionType.ALLOW,
            )
            for acl in acls
        ]  # fmt: skip
        _wait_all(self.admin.delete_acls(filters, request_timeout=30), "revoke")

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


def _acl(binding: AclBinding) -> Acl | None:
    """Our name for a binding, or None for one topics.yaml could never ask for."""
    resource = {v: k for k, v in _RESOURCES.items()}.get(binding.restype)  # type: ignore[arg-type]
    pattern = {v: k for k, v in _PATTERNS.items()}.get(binding.resource_pattern_type)  # type: ignore[arg-type]
    operation = {v: k for k, v in _OPERATIONS.items()}.get(binding.operation)  # type: ignore[arg-type]
    if None in (resource, pattern, operation) or binding.host != "*":
        return None
    if binding.permission_type != AclPermissionType.ALLOW:
        return None
    return Acl(binding.principal, resource, binding.name, pattern, operation)  # type: ignore[arg-type]


def _unknown_topic(error: KafkaException) -> bool:
    cause = error.args[0] if error.args else None
    return isinstance(cause, KafkaError) and cause.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def _has_leaders(topic: Any, count: int) -> bool:
    if topic is None or topic.error is not None:
        return False
    partitions = topic.partitions
    return len(partitions) >= count and all(p.leader >= 0 for p in partitions.values())


TOLERATED_ON_CREATE = (KafkaError.TOPIC_ALREADY_EXISTS, KafkaError.REQUEST_TIMED_OUT)
# The file asks for something no broker accepts: bad input (exit 2), not an outage.
REFUSED_INPUT = (
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
    KafkaError.INVALID_PARTITIONS,
    KafkaError.INVALID_REPLICATION_FACTOR,
)


def _wait_all(futures: dict[Any, Any], what: str, tolerated: tuple[int, ...] = ()) -> None:
    for target, future in futures.items():
        name = getattr(target, "name", target)
        try:
            future.result()
        except KafkaException as error:
            cause = error.args[0] if error.args else None
            if isinstance(cause, KafkaError) and cause.code() in tolerated:
                continue
            if isinstance(cause, KafkaError) and cause.code() in REFUSED_INPUT:
                raise BadInput(f"could not {what} {name}: {reason(error)}") from error
            raise kafka_error(f"could not {what} {name}", error) from error


@contextmanager
def scratch_topology(topology: Topology, bootstrap: str, label: str) -> Iterator[Topology]:
    """Create every topic of topics.yaml under a fresh prefix; delete them afterwards."""
    scratch = topology.with_prefix(f"{label}-{int(time.time())}-")
    admin = TopicAdmin(bootstrap)
    admin.execute(admin.plan(scratch, dev=admin.broker_count() < 3))
    try:
        yield scratch
    finally:
        admin.delete([t.name for t in scratch.topics()])
        _delete_groups(bootstrap, scratch.prefix)
        if admin.has_authorizer():
            admin.revoke(wanted_acls(scratch))


def _delete_groups(bootstrap: str, prefix: str) -> None:
    """Delete the scratch run's groups (their members have stopped, their sessions end
    within GROUPS_GONE_S); a group that will not go is said in a warning, and does not
    fail a run that is over."""
    try:
        left = GroupAdmin(bootstrap).delete_prefixed(prefix, wait_s=GROUPS_GONE_S)
    except EcomError as error:
        LOG.warning("scratch groups %s* left behind: %s", prefix, error)
        return
    for group, why in left.items():
        LOG.warning("scratch group %s left behind: %s", group, why)
