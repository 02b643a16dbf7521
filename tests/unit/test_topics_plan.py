from __future__ import annotations

import yaml

from ecom.topics_plan import Acl, LiveTopic, make_plan, wanted_acls
from ecom.topology import Topology, parse_services, parse_specs
from tests.support import REPO


def _topology(partitions: int = 6, replicas: int = 3, min_isr: int = 2) -> Topology:
    doc = {
        "defaults": {"partitions": partitions, "replication_factor": replicas,
                     "configs": {"min.insync.replicas": min_isr}},
        "topics": {"orders": {"key": "order_id", "events": ["OrderCreated"]}},
    }  # fmt: skip
    return Topology(parse_specs(doc, "test"))


def _live(partitions: int = 6, replicas: int = 3, min_isr: str = "2") -> dict[str, LiveTopic]:
    configs = {"min.insync.replicas": min_isr, "retention.ms": "604800000"}
    return {"orders": LiveTopic("orders", partitions, replicas, configs)}


def test_missing_topic_is_created() -> None:
    plan = make_plan(_topology(), {}, brokers=3)
    assert [(c.action, c.topic, c.partitions, c.replication_factor) for c in plan.changes] == [
        ("create", "orders", 6, 3)
    ]
    assert plan.changes[0].configs == {"min.insync.replicas": "2"}
    assert not plan.refusals


def test_matching_cluster_needs_no_change() -> None:
    assert make_plan(_topology(), _live(), brokers=3).is_empty


def test_more_partitions_are_added_with_a_note_on_key_order() -> None:
    plan = make_plan(_topology(partitions=12), _live(), brokers=3)
    assert [(c.action, c.partitions) for c in plan.changes] == [("add-partitions", 12)]
    assert any("per-key order" in note for note in plan.notes)


def test_fewer_partitions_are_refused() -> None:
    plan = make_plan(_topology(partitions=3), _live(), brokers=3)
    assert plan.refusals == [
        "orders: has 6 partitions, topics.yaml asks for 3; Kafka cannot remove partitions "
        "(create a new topic instead)"
    ]


def test_replication_factor_change_is_refused() -> None:
    plan = make_plan(_topology(replicas=2, min_isr=1), _live(), brokers=3)
    assert len(plan.refusals) == 1
    assert "cannot change it in place" in plan.refusals[0]


def test_more_replicas_than_brokers_is_refused() -> None:
    plan = make_plan(_topology(replicas=4), {}, brokers=3)
    assert not plan.changes
    assert "needs 4 brokers but the cluster has 3" in plan.refusals[0]


def test_one_broker_without_dev_is_refused() -> None:
    plan = make_plan(_topology(), {}, brokers=1)
    assert "pass --dev" in plan.refusals[0]


def test_dev_caps_replication_and_min_isr_and_says_so() -> None:
    plan = make_plan(_topology(), {}, brokers=1, dev=True)
    (change,) = plan.changes
    assert (change.replication_factor, change.configs["min.insync.replicas"]) == (1, "1")
    assert plan.notes == [
        "--dev: the cluster has 1 broker(s), so 1 topic(s) get replication factor 1 "
        "and min.insync.replicas at most 1"
    ]


def test_dev_changes_nothing_when_brokers_suffice() -> None:
    plan = make_plan(_topology(), {}, brokers=3, dev=True)
    assert plan.changes[0].replication_factor == 3
    assert not plan.notes


def test_config_drift_is_altered_and_unmanaged_configs_left_alone() -> None:
    plan = make_plan(_topology(min_isr=1), _live(), brokers=3)
    (change,) = plan.changes
    assert change.action == "alter-configs"
    assert change.configs == {"min.insync.replicas": "1"}


def test_min_isr_above_replication_factor_is_refused() -> None:
    plan = make_plan(_topology(replicas=2, min_isr=3), {}, brokers=3)
    assert "above the replication factor" in plan.refusals[0]


def _shop() -> Topology:
    doc = {
        "defaults": {"partitions": 6, "replication_factor": 3},
        "topics": {
            "users": {"key": "user_id", "events": ["UserCreated"]},
            "orders": {"key": "order_id", "events": ["OrderCreated"]},
        },
        "services": {
            "api": {"principals": ["commands"], "sends": ["UserCreated", "OrderCreated"]},
            "views": {"principals": ["projections", "replay"],
                      "receives": ["UserCreated", "OrderCreated"],
                      "groups": {"projections": ["ecom-projection-*"],
                                 "replay": ["ecom-replay-*"]}},
            "flow": {"principals": ["payment"], "groups": ["order-flow-payment"]},
            "page": {"principals": ["monitor"], "watches": True},
        },
    }  # fmt: skip
    specs = parse_specs(doc, "test")
    return Topology(specs, "", parse_services(doc, specs, "test"))


def test_acls_follow_the_services_and_only_what_they_govern_is_revoked() -> None:
    shop = _shop()
    wanted = set(wanted_acls(shop))
    assert Acl("User:commands", "topic", "orders", "literal", "write") in wanted
    assert Acl("User:projections", "topic", "users", "literal", "read") in wanted
    assert Acl("User:replay", "group", "ecom-replay-", "prefixed", "read") in wanted
    assert Acl("User:replay", "group", "ecom-projection-", "prefixed", "read") not in wanted
    assert not any(a.principal == "User:commands" and a.operation == "read" for a in wanted)
    live = dict.fromkeys(("users", "orders"), LiveTopic("x", 6, 3, {}))
    assert make_plan(shop, live, 3, live_acls=None).is_empty, "no authorizer: no ACLs"
    assert make_plan(shop, live, 3, live_acls=wanted).is_empty, "idempotent"
    stale = Acl("User:projections", "topic", "orders", "literal", "write")
    foreign = Acl("User:projections", "group", "t1-ecom-projection-", "prefixed", "read")
    someone = Acl("User:alice", "topic", "orders", "literal", "write")
    plan = make_plan(shop, live, 3, live_acls=wanted | {stale, foreign, someone})
    assert [(c.action, c.detail) for c in plan.changes] == [
        ("remove-acl", "User:projections write topic orders")
    ]
    missing = make_plan(shop, live, 3, live_acls=wanted - {stale} - {wanted_acls(shop)[0]})
    assert [c.action for c in missing.changes] == ["add-acl"]


def test_a_principal_taken_out_of_the_file_loses_its_acls() -> None:
    """Dropping `producer` from a service, or a whole service, planned no change: only
    principals still named were governed, so the dropped one kept WRITE everywhere."""
    shop = _shop()
    live = dict.fromkeys(("users", "orders"), LiveTopic("x", 6, 3, {}))
    dropped = {
        Acl("User:producer", "topic", "orders", "literal", "write"),
        Acl("User:producer", "group", "ecom-watch", "literal", "read"),
    }
    kept = {
        Acl("User:alice", "topic", "orders", "literal", "write"),  # not one of ecom's users
        Acl("User:producer", "topic", "elsewhere", "literal", "write"),  # not our topic
        Acl("User:producer", "group", "staging-ecom-watch", "literal", "read"),  # not ours
    }
    plan = make_plan(shop, live, 3, live_acls=set(wanted_acls(shop)) | dropped | kept)
    assert sorted(c.detail for c in plan.changes) == [
        "User:producer read group ecom-watch",
        "User:producer write topic orders",
    ]


def test_the_watcher_reads_and_describes_everything_and_changes_nothing() -> None:
    shop = _shop()
    mine = {a for a in wanted_acls(shop) if a.principal == "User:monitor"}
    assert {a.operation for a in mine} == {"read", "describe"}, "no write"
    topics = {t.name for t in shop.topics()}
    assert {a.name for a in mine if a.resource == "topic" and a.operation == "read"} == topics
    groups = {(a.name, a.pattern, a.operation) for a in mine if a.resource == "group"}
    assert groups == {
        ("order-flow-", "prefixed", "describe"),
        ("ecom-projection-", "prefixed", "describe"),
        ("ecom-watch", "literal", "describe"),
    }, "describes the groups it shows, joins none"
    stale = Acl("User:monitor", "group", "ecom-replay-", "prefixed", "describe")
    live = dict.fromkeys(("users", "orders"), LiveTopic("x", 6, 3, {}))
    plan = make_plan(shop, live, 3, live_acls=set(wanted_acls(shop)) | {stale})
    assert [c.detail for c in plan.changes] == ["User:monitor describe group ecom-replay-*"]


def test_the_watcher_never_reads_the_workers_state() -> None:
    doc = yaml.safe_load((REPO / "topics.yaml").read_text())
    specs = parse_specs(doc, "topics.yaml")
    topology = Topology(specs, "", parse_services(doc, specs, "topics.yaml"))
    read = {a.name for a in wanted_acls(topology) if a.principal == "User:monitor"
            and a.operation == "read"}  # fmt: skip
    changelogs = {t.name for t in topology.topics() if t.spec.kind == "changelog"}
    assert changelogs
    assert not read & changelogs
    assert topology.topic("order-flow-dlq").name in read


def test_a_share_group_member_reads_its_queue_and_sets_only_its_own_group() -> None:
    doc = {
        "defaults": {"partitions": 6, "replication_factor": 3},
        "topics": {"orders": {"key": "order_id", "events": ["OrderConfirmed"]}},
        "services": {"mail": {"principals": ["notifications"], "receives": ["OrderConfirmed"],
                              "share_groups": ["ecom-notifications"]}},
    }  # fmt: skip
    specs = parse_specs(doc, "test")
    shop = Topology(specs, "t1-", parse_services(doc, specs, "test"))
    assert set(wanted_acls(shop)) == {
        Acl("User:notifications", "topic", "t1-orders", "literal", "read"),
        Acl("User:notifications", "group", "t1-ecom-notifications", "literal", "read"),
        Acl("User:notifications", "group", "t1-ecom-notifications", "literal", "alter-configs"),
    }
    stale = Acl("User:notifications", "group", "t1-ecom-notifications", "literal", "write")
    live = {"t1-orders": LiveTopic("t1-orders", 6, 3, {})}
    plan = make_plan(shop, live, 3, live_acls=set(wanted_acls(shop)) | {stale})
    assert [c.action for c in plan.changes] == ["remove-acl"], "its group is governed"
