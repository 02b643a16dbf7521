"""Broker settings shared by the local cluster and docker-compose.yml.

Both run the same KRaft layout: every node is broker and controller at once, three
voters, loopback listeners. A test checks docker-compose.yml against `cluster_settings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

POM_PATH = Path(__file__).with_name("pom.xml")
LOG4J_PATH = Path(__file__).with_name("log4j2.properties")
CONTROLLER_PORT_OFFSET = 100


def kafka_version() -> str:
    """Return the Kafka version the pom pins."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM_PATH.read_text())
    if match is None:
        raise RuntimeError(f"{POM_PATH} has no <kafka.version>")
    return match.group(1)


def cluster_settings(brokers: int) -> dict[str, str]:
    """Return the cluster-wide broker settings for a cluster of `brokers` nodes."""
    min_isr = str(min(2, brokers))
    replicas = str(min(3, brokers))
    return {
        "num.partitions": "6",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        # Topics are code (topics.yaml): a typo must fail, not create a topic.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "12",
        # A laptop cluster: consumers should not wait 3 s for the first rebalance.
        "group.initial.rebalance.delay.ms": "0",
    }


@dataclass(frozen=True)
class NodeAddress:
    """Where one node listens."""

    node_id: int
    broker_port: int
    controller_port: int

    @classmethod
    def for_node(cls, node_id: int, port_base: int) -> NodeAddress:
        broker = port_base + node_id - 1
        return cls(node_id, broker, broker + CONTROLLER_PORT_OFFSET)


def quorum_voters(addresses: list[NodeAddress]) -> str:
    """Return controller.quorum.voters for these nodes."""
    return ",".join(f"{a.node_id}@127.0.0.1:{a.controller_port}" for a in addresses)


def node_settings(address: NodeAddress, voters: str, data_dir: Path) -> dict[str, str]:
    """Return the settings that differ per node."""
    return {
        "process.roles": "broker,controller",
        "node.id": str(address.node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{address.broker_port},"
            f"CONTROLLER://127.0.0.1:{address.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{address.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
    }


def render_properties(settings: dict[str, str]) -> str:
    """Render settings as a Java properties file."""
    return "".join(f"{key}={value}\n" for key, value in settings.items())
