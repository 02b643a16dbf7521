"""Broker settings shared by the local cluster and docker-compose.yml.

Both run the same KRaft layout: every node is broker and controller at once, three
voters, loopback listeners. A test checks docker-compose.yml against `cluster_settings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ecom.kafka.security import BROKER_USER, MECHANISM

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
        # Share groups (queues) keep their state in a topic of their own.
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "share.coordinator.state.topic.num.partitions": "12",
        # Lets a share group hand a crashed worker's records out again after 1 s
        # (a group sets its own lock time; Kafka's floor is otherwise 15 s).
        "group.share.min.record.lock.duration.ms": "1000",
        # A new share group member gets its first records after one heartbeat: 1 s, not 5.
        "group.share.heartbeat.interval.ms": "1000",
        "group.share.min.heartbeat.interval.ms": "1000",
        # A share group member that died (no heartbeat) is dropped after 10 s, not 45.
        "group.share.session.timeout.ms": "10000",
        "group.share.min.session.timeout.ms": "6000",
        # A laptop cluster: consumers should not wait 3 s for the first rebalance.
        "group.initial.rebalance.delay.ms": "0",
        # A restarted node leads its partitions again within seconds, not 5 minutes:
        # until then the others do its share of the work (after `cluster up` on a
        # stopped cluster, the first node up leads every partition).
        "leader.imbalance.check.interval.seconds": "10",
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


SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


def node_common_name(node_id: int) -> str:
    """The subject of a node's certificate; its principal is `User:CN=<this>`."""
    return f"ecom-kafka-node-{node_id}"


def secure_settings(
    keystore: str,
    truststore: str,
    broker_password: str,
    super_users: list[str],
    client_listeners: tuple[str, ...] = ("SASL_SSL",),
) -> dict[str, str]:
    """Return what makes a node secure: clients and brokers on SASL_SSL with SCRAM,
    controllers on mutual TLS (SCRAM cannot run between KRaft controllers), the
    StandardAuthorizer denying whatever no ACL allows. The listeners' addresses are the
    caller's (loopback here, container names in docker-compose.yml)."""
    jaas = f'{SCRAM_LOGIN} required username="{BROKER_USER}" password="{broker_password}";'
    protocols = ",".join(f"{name}:SASL_SSL" for name in client_listeners)
    settings = {
        "inter.broker.listener.name": client_listeners[0],
        "listener.security.protocol.map": f"CONTROLLER:SSL,{protocols}",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": keystore,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": truststore,
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join(super_users),
    }
    for name in client_listeners:
        settings[f"listener.name.{name.lower()}.scram-sha-512.sasl.jaas.config"] = jaas
    return settings


def secure_listeners(address: NodeAddress) -> dict[str, str]:
    """The local cluster's loopback listeners of a secure node."""
    return {
        "listeners": (
            f"SASL_SSL://127.0.0.1:{address.broker_port},"
            f"CONTROLLER://127.0.0.1:{address.controller_port}"
        ),
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{address.broker_port}",
    }


def super_users(nodes: int) -> list[str]:
    """The brokers' own principals (SCRAM between brokers, certificates between
    controllers) and the admin."""
    certificates = [f"User:CN={node_common_name(i)}" for i in range(1, nodes + 1)]
    return [f"User:{BROKER_USER}", "User:admin", *certificates]


def render_properties(settings: dict[str, str]) -> str:
    """Render settings as a Java properties file."""
    return "".join(f"{key}={value}\n" for key, value in settings.items())
