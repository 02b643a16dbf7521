"""Nothing acknowledged is lost when a broker dies (RF 3, min ISR 2, acks=all)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from ecom.cluster import LocalCluster
from ecom.kafka import TopicAdmin, client_config
from ecom.topology import Topology
from tests.conftest import KafkaCluster
from tests.support import run_cli, wait_for

KEYS = [f"order-{i}" for i in range(24)]
PER_PHASE = 3000


class Acks:
    """Delivery reports: what Kafka acknowledged, per key, in send order."""

    def __init__(self) -> None:
        self.acked: dict[str, list[int]] = defaultdict(list)
        self.failed: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        key, seq = _key_and_seq(message)
        with self.lock:
            if error is None:
                self.acked[key].append(seq)
            else:
                self.failed.append(f"{key}: {error.str()}")


def _key_and_seq(message: Message) -> tuple[str, int]:
    key, value = message.key(), message.value()
    assert key is not None
    assert value is not None
    return key.decode(), int(value)


def _produce(producer: Producer, topic: str, sequence: range, acks: Acks) -> None:
    for seq in sequence:
        key = KEYS[seq % len(KEYS)]
        producer.produce(topic, key=key, value=str(seq), on_delivery=acks)
        producer.poll(0)
    assert producer.flush(120) == 0, "records still in flight after 120 s"


def _read_back(bootstrap: str, topic: str, group: str, expected: int) -> dict[str, list[int]]:
    settings = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    consumer = Consumer(client_config(bootstrap, **settings))
    consumer.subscribe([topic])
    seen: dict[str, list[int]] = defaultdict(list)
    count = 0

    def consumed_all() -> bool:
        nonlocal count
        for message in consumer.consume(500, timeout=0.5):
            assert message.error() is None, message.error()
            key, seq = _key_and_seq(message)
            seen[key].append(seq)
            count += 1
        return count >= expected

    try:
        wait_for(consumed_all, 120, f"{expected} records on {topic}", interval=0)
    finally:
        consumer.close()
    return seen


def _led_elsewhere(bootstrap: str, topic: str, node: int) -> list[int]:
    """Return the partitions whose preferred replica (the first) is `node` but whose
    leader is another node."""
    metadata = TopicAdmin(bootstrap).admin.list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions.values()
    return [p.id for p in partitions if p.replicas[0] == node and p.leader != node]


def _leader_of_partition_0(bootstrap: str, topic: str) -> int:
    metadata = TopicAdmin(bootstrap).admin.list_topics(topic, timeout=10)
    leader: int = metadata.topics[topic].partitions[0].leader
    return leader


@pytest.fixture
def restarts_killed_nodes(local_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """Start again any node a test killed, and wait until the cluster is whole."""
    yield local_cluster
    for node in local_cluster.nodes():
        if node.pid() is None:
            run_cli("cluster", "start", str(node.node_id), timeout=180)


def test_acknowledged_records_survive_a_broker_kill(
    kafka: KafkaCluster, restarts_killed_nodes: LocalCluster, topology: Topology, group_id: str
) -> None:
    topic = topology.topic("orders").name
    spec = topology.topic("orders").spec
    assert (spec.replication_factor, spec.min_insync_replicas) == (3, 2)
    settings = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
    producer = Producer(
        client_config(kafka.bootstrap, **settings, **{"delivery.timeout.ms": 120000})
    )
    acks = Acks()
    _produce(producer, topic, range(PER_PHASE), acks)

    victim = _leader_of_partition_0(kafka.bootstrap, topic)
    killed = run_cli("cluster", "kill", str(victim))
    assert killed.returncode == 0, killed.stderr
    _produce(producer, topic, range(PER_PHASE, 2 * PER_PHASE), acks)

    assert acks.failed == []
    acknowledged = sum(len(v) for v in acks.acked.values())
    assert acknowledged == 2 * PER_PHASE
    seen = _read_back(kafka.bootstrap, topic, group_id, acknowledged)
    for key in KEYS:
        assert seen[key] == acks.acked[key], f"{key}: read back differs from what was acked"
        assert seen[key] == sorted(seen[key]), f"{key}: out of order"

    started = run_cli("cluster", "start", str(victim), timeout=180)
    assert started.returncode == 0, started.stderr

    def healthy() -> bool:
        return TopicAdmin(kafka.bootstrap).live_topics([topic])[topic].under_replicated == 0

    wait_for(healthy, 120, f"{topic} fully replicated again")
    wait_for(lambda: _led_elsewhere(kafka.bootstrap, topic, victim) == [], 60,
             f"node {victim} leading its preferred partitions of {topic} again")  # fmt: skip
