"""Plan how to make a cluster's topics match topics.yaml (pure; no I/O here).

A plan lists what will be created, grown or reconfigured, and refuses whatever Kafka
cannot do in place: fewer partitions, another replication factor, more replicas than
brokers. A plan with refusals is never executed, not even in part. On a cluster with an
authorizer it also lists the ACLs topics.yaml's services need and the cluster lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ecom.topology import Topic, Topology

Action = Literal["create", "add-partitions", "alter-configs", "add-acl", "remove-acl"]


@dataclass(frozen=True)
class LiveTopic:
    """A topic as the cluster has it."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]
    under_replicated: int = 0


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: a principal may do an operation on a topic or group."""

    principal: str  # User:<name>
    resource: Literal["topic", "group"]
    name: str
    pattern: Literal["literal", "prefixed"]
    operation: Literal["read", "write", "describe", "alter-configs"]

    def __str__(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"{self.principal} {self.operation} {self.resource} {self.name}{star}"


def wanted_acls(topology: Topology) -> list[Acl]:
    """Every ACL the services of topics.yaml need, under the topology's prefix."""
    wanted: set[Acl] = set()
    for service in topology.services:
        sends = {topology.for_event(e).name for e in service.sends}
        receives = {topology.for_event(e).name for e in service.receives}
        owns = {topology.topic(t).name for t in service.owns}
        writes = sends | owns | {topology.topic(t).name for t in service.writes}
        for user in service.principals:
            principal = f"User:{user}"
            for topic in writes:
                wanted.add(Acl(principal, "topic", topic, "literal", "write"))
                wanted.add(Acl(principal, "topic", topic, "literal", "describe"))
            for topic in receives | owns:
                wanted.add(Acl(principal, "topic", topic, "literal", "read"))
            for group in service.groups_of(user):
                prefixed = group.endswith("*")
                name = topology.prefix + group.rstrip("*")
                wanted.add(Acl(principal, "group", name, _pattern(prefixed), "read"))
            for group in service.share_groups:
                name = topology.prefix + group
                wanted.add(Acl(principal, "group", name, "literal", "read"))
                wanted.add(Acl(principal, "group", name, "literal", "alter-configs"))
            if service.watches:
                wanted |= _watcher_acls(topology, principal)
    return sorted(wanted)


def _watcher_acls(topology: Topology, principal: str) -> set[Acl]:
    """What the live page's watch does, and no more: read the topics it tails (never the
    workers' state), describe the groups whose lag it shows, look up its own group."""
    acls = {Acl(principal, "group", topology.watch_group(), "literal", "describe")}
    for topic in topology.watched_topics():
        acls.add(Acl(principal, "topic", topic.name, "literal", "read"))
        acls.add(Acl(principal, "topic", topic.name, "literal", "describe"))
    for group in topology.watched_groups():
        acls.add(Acl(principal, "group", group.rstrip("*"), _pattern(group.endswith("*")),
                     "describe"))  # fmt: skip
    return acls


def _pattern(prefixed: bool) -> Literal["literal", "prefixed"]:
    return "prefixed" if prefixed else "literal"


@dataclass(frozen=True)
class Change:
    """One step of a plan."""

    topic: str
    action: Action
    detail: str
    partitions: int = 0
    replication_factor: int = 0
    configs: dict[str, str] = field(default_factory=dict)
    acl: Acl | None = None


@dataclass(frozen=True)
class Plan:
    """What `ecom topics apply` would do."""

    changes: list[Change]
    refusals: list[str]
    notes: list[str]

    @property
    def is_empty(self) -> bool:
        return not self.changes and not self.refusals


def make_plan(
    topology: Topology,
    live: dict[str, LiveTopic],
    brokers: int,
    dev: bool = False,
    live_acls: set[Acl] | None = None,
) -> Plan:
    """Compare topics.yaml with the cluster and decide every change (ACLs too, unless
    live_acls is None: a cluster without an authorizer)."""
    changes: list[Change] = []
    refusals: list[str] = []
    capped = 0
    for topic in topology.topics():
        replicas, configs = _effective(topic, brokers, dev)
        capped += replicas < topic.spec.replication_factor
        existing = live.get(topic.name)
        if int(configs.get("min.insync.replicas", "1")) > replicas:
            refusals.append(
                f"{topic.name}: min.insync.replicas {configs['min.insync.replicas']} is above "
                f"the replication factor {replicas}; no acks=all write could ever succeed"
            )
        elif existing is None:
            changes += _plan_create(topic, replicas, configs, brokers, refusals)
        else:
            changes += _plan_update(topic, existing, replicas, configs, refusals)
    notes = []
    if capped:
        notes.append(
            f"--dev: the cluster has {brokers} broker(s), so {capped} topic(s) get "
            f"replication factor {brokers} and min.insync.replicas at most {brokers}"
        )
    if any(c.action == "add-partitions" for c in changes):
        notes.append("adding partitions moves keys: per-key order is kept only after the change")
    if live_acls is not None:
        wanted = wanted_acls(topology)
        missing = [acl for acl in wanted if acl not in live_acls]
        changes += [Change(acl.name, "add-acl", str(acl), acl=acl) for acl in missing]
        stale = sorted(acl for acl in live_acls - set(wanted) if _governed(topology, acl))
        changes += [Change(acl.name, "remove-acl", str(acl), acl=acl) for acl in stale]
    return Plan(changes, refusals, notes)


def _own_principals() -> set[str]:
    """The users ecom makes on a secure cluster; admin is a super user and needs no ACL."""
    from ecom.kafka.security import SERVICES  # here: ecom.kafka's package imports this one

    return {f"User:{user}" for user in SERVICES if user != "admin"}


def _governed(topology: Topology, acl: Acl) -> bool:
    """Tell whether topics.yaml decides this ACL: one of its principals, or one of the
    users ecom makes that it no longer names, on one of its topics or on one of the
    groups its services name (under this prefix only, so other environments on the
    cluster keep theirs)."""
    listed = {f"User:{p}" for s in topology.services for p in s.principals}
    if acl.principal not in listed | _own_principals():
        return False
    if acl.resource == "topic":
        return acl.name in {t.name for t in topology.topics()}
    groups = {
        topology.prefix + group.rstrip("*")
        for service in topology.services
        for principal in service.principals
        for group in service.groups_of(principal)
    }
    groups |= {topology.prefix + g for s in topology.services for g in s.share_groups}
    groups |= {topology.watch_group(), *(g.rstrip("*") for g in topology.watched_groups())}
    return acl.name in groups


def _effective(topic: Topic, brokers: int, dev: bool) -> tuple[int, dict[str, str]]:
    """Return the replication factor and configs to ask for, capped only in --dev."""
    spec = topic.spec
    if not dev or spec.replication_factor <= brokers:
        return spec.replication_factor, dict(spec.configs)
    configs = dict(spec.configs)
    if spec.min_insync_replicas > brokers:
        configs["min.insync.replicas"] = str(brokers)
    return brokers, configs


def _plan_create(
    topic: Topic, replicas: int, configs: dict[str, str], brokers: int, refusals: list[str]
) -> list[Change]:
    if replicas > brokers:
        refusals.append(
            f"{topic.name}: replication factor {replicas} needs {replicas} brokers but the "
            f"cluster has {brokers}; start more brokers (or pass --dev on a laptop cluster)"
        )
        return []
    detail = f"{topic.spec.partitions} partitions, replication factor {replicas}"
    return [Change(topic.name, "create", detail, topic.spec.partitions, replicas, configs)]


def _plan_update(
    topic: Topic,
    existing: LiveTopic,
    replicas: int,
    configs: dict[str, str],
    refusals: list[str],
) -> list[Change]:
    changes: list[Change] = []
    wanted = topic.spec.partitions
    if existing.partitions > wanted:
        refusals.append(
            f"{topic.name}: has {existing.partitions} partitions, topics.yaml asks for "
            f"{wanted}; Kafka cannot remove partitions (create a new topic instead)"
        )
    elif existing.partitions < wanted:
        detail = f"partitions {existing.partitions} -> {wanted}"
        changes.append(Change(topic.name, "add-partitions", detail, partitions=wanted))
    if existing.replication_factor != replicas:
        refusals.append(
            f"{topic.name}: replication factor is {existing.replication_factor} on the "
            f"cluster, {replicas} in topics.yaml; Kafka cannot change it in place "
            "(reassign its partitions with kafka-reassign-partitions)"
        )
    differing = {k: v for k, v in configs.items() if existing.configs.get(k) != v}
    if differing:
        detail = ", ".join(f"{k} {existing.configs.get(k)} -> {v}" for k, v in differing.items())
        changes.append(Change(topic.name, "alter-configs", detail, configs=differing))
    return changes
