from __future__ import annotations

from pathlib import Path

import pytest

from ecom.errors import TopologyError
from ecom.topology import Topology, parse_specs
from tests.support import REPO


def test_topics_yaml_declares_every_domain_topic_with_safe_defaults() -> None:
    topology = Topology.load(REPO / "topics.yaml")
    names = {t.spec.name for t in topology.topics()}
    assert {"users", "products", "pricing", "inventory", "orders"} <= names
    for topic in topology.topics():
        assert topic.spec.replication_factor == 3
        assert topic.spec.configs["min.insync.replicas"] == "2"
        assert topic.spec.configs["unclean.leader.election.enable"] == "false"
    assert any(t.spec.kind == "dlq" for t in topology.topics())


def test_event_types_map_to_topic_and_key_field() -> None:
    topology = Topology.load(REPO / "topics.yaml", prefix="x-")
    orders = topology.for_event("OrderCreated")
    assert orders.name == "x-orders"
    assert orders.key_field("OrderCreated") == "order_id"
    assert topology.for_event("TaxRateChanged").key_field("TaxRateChanged") == "country"


def test_prefix_changes_names_only() -> None:
    plain = Topology.load(REPO / "topics.yaml")
    prefixed = plain.with_prefix("p1-")
    assert [t.name for t in prefixed.topics()] == ["p1-" + t.name for t in plain.topics()]
    assert [t.spec for t in prefixed.topics()] == [t.spec for t in plain.topics()]


def test_config_values_are_rendered_as_kafka_spells_them() -> None:
    doc = {"topics": {"a": {"partitions": 1, "replication_factor": 1,
                            "configs": {"x.enable": False, "retention.ms": -1}}}}  # fmt: skip
    (spec,) = parse_specs(doc, "test")
    assert spec.configs == {"x.enable": "false", "retention.ms": "-1"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "expected a mapping with a 'topics' section"),
        ({"topics": {"a": {"partitions": 0, "replication_factor": 1}}}, "topics.a.partitions"),
        ({"topics": {"a": {"partitions": 1}}}, "topics.a.replication_factor"),
        ({"topics": {"a": {"partitions": 1, "replication_factor": 1, "events": ["E"]}}},
         "needs a key field"),
        ({"topics": {"a b": {"partitions": 1, "replication_factor": 1}}}, "topics.a b.name"),
        ({"defaults": {"partitions": 1, "replication_factor": 1}, "topics": {
            "a": {"key": "k", "events": ["E"]}, "b": {"key": "k", "events": ["E"]}}},
         "E is on both a and b"),
        ({"topics": {"a": {"partitions": 1, "replication_factor": 1, "key": "user_id",
                           "events": ["UserCreated", "NoSuchEvent"]}}},
         "NoSuchEvent is no event type the schemas define"),
        ({"topics": {"a": {"partitions": 1, "replication_factor": 1, "key": "no_such_field",
                           "events": ["UserCreated"]}}},
         "UserCreated has no field 'no_such_field' to key by"),
    ],
)  # fmt: skip
def test_malformed_specs_name_the_spot(doc: object, message: str) -> None:
    with pytest.raises(TopologyError, match=message.replace(".", r"\.")):
        parse_specs(doc, "test")


def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "topics.yaml"
    bad.write_text("topics: [unclosed")
    with pytest.raises(TopologyError, match="not valid YAML"):
        Topology.load(bad)
    with pytest.raises(TopologyError, match="cannot read"):
        Topology.load(tmp_path / "missing.yaml")
    bad.write_bytes(b"\xff\xfe\n")
    with pytest.raises(TopologyError, match=r"topics.yaml is not UTF-8 text \(byte 0: "):
        Topology.load(bad)


def test_unknown_topic_or_event_is_a_topology_error() -> None:
    topology = Topology.load(REPO / "topics.yaml")
    with pytest.raises(TopologyError, match="no topic 'nope'"):
        topology.topic("nope")
    with pytest.raises(TopologyError, match="carries 'Nope'"):
        topology.for_event("Nope")
