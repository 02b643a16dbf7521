from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ecom.cluster import config
from ecom.cluster.local import find_bootstrap
from ecom.cluster.tools import java_major_version
from ecom.errors import ToolMissing
from ecom.settings import Settings


def test_node_addresses_follow_the_port_base() -> None:
    address = config.NodeAddress.for_node(2, 9092)
    assert (address.broker_port, address.controller_port) == (9093, 9193)


def test_three_nodes_vote_on_loopback() -> None:
    addresses = [config.NodeAddress.for_node(i, 9092) for i in (1, 2, 3)]
    assert config.quorum_voters(addresses) == ("1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194")


def test_cluster_settings_are_durable_and_sized_by_node_count() -> None:
    three = config.cluster_settings(3)
    assert three["min.insync.replicas"] == "2"
    assert three["offsets.topic.replication.factor"] == "3"
    assert three["unclean.leader.election.enable"] == "false"
    assert three["auto.create.topics.enable"] == "false"
    one = config.cluster_settings(1)
    assert (one["min.insync.replicas"], one["transaction.state.log.min.isr"]) == ("1", "1")


def test_properties_render_one_per_line() -> None:
    assert config.render_properties({"a": "1", "b.c": "x"}) == "a=1\nb.c=x\n"


def _fake_java(tmp_path: Path, version_line: str) -> str:
    java = tmp_path / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return str(java)


@pytest.mark.parametrize(
    ("line", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_402"', 8),
     ('openjdk version "25" 2025-09-16', 25)],
)  # fmt: skip
def test_java_version_is_parsed(tmp_path: Path, line: str, major: int) -> None:
    assert java_major_version(_fake_java(tmp_path, line)) == major


def test_unparseable_java_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="could not tell the version"):
        java_major_version(_fake_java(tmp_path, "hello"))


def test_a_stopped_cluster_at_another_port_base_is_looked_for_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not on 9092, where another cluster may run: commands went there silently."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "ECOM_BOOTSTRAP_SERVERS", "ECOM_CLUSTER_PORT_BASE"):
        monkeypatch.delenv(name, raising=False)
    moved = Settings(cluster_dir=tmp_path / "none", cluster_port_base=29092)
    assert find_bootstrap(moved) == "localhost:29092"
    assert find_bootstrap(Settings(cluster_dir=tmp_path / "none")) == "localhost:9092"
