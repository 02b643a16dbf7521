"""`ecom offsets`: plans equal Kafka's consumer-groups tool; resets are safe."""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.base import client_properties, run_kafka_tool
from ecom.kafka import GroupAdmin, client_config, scratch_topology
from ecom.topology import Topology
from streams.pricing import Priced
from streams.state import Table
from tests.conftest import KafkaCluster
from tests.support import REPO, run_cli, unique, wait_for

pytestmark = pytest.mark.kafka
GROUP_TOOL = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
HOUR_MS = 3_600_000
NOW_MS = int(time.time() * 1000)
OLD_MS = NOW_MS - 48 * HOUR_MS  # the first half of each partition is two days old


@pytest.fixture
def topic(kafka: KafkaCluster) -> Iterator[str]:
    """Three partitions of 20 records (old, then recent), partition 0 trimmed to start at 3."""
    name = unique("offsets-")
    admin = AdminClient(client_config(kafka.bootstrap))
    admin.create_topics([NewTopic(name, 3, 1)])[name].result()
    producer = Producer(client_config(kafka.bootstrap))
    for partition in range(3):
        for i in range(20):
            at = OLD_MS + i * 1000 if i < 10 else NOW_MS - HOUR_MS + i * 1000
            producer.produce(name, b"x", partition=partition, timestamp=at)
    assert producer.flush(30) == 0
    admin.delete_records([TopicPartition(name, 0, 3)])[TopicPartition(name, 0, 3)].result()
    yield name
    admin.delete_topics([name])


def commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit offsets for a group that then has no members."""
    consumer = Consumer(client_config(bootstrap, **{"group.id": group}))
    moved = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
    consumer.commit(offsets=moved, asynchronous=False)
    consumer.close()


def ours(bootstrap: str, group: str, *args: str) -> dict[tuple[str, int], int]:
    result = run_cli("offsets", "reset", group, "--bootstrap", bootstrap, "--export", *args)
    assert result.returncode == 0, result.stderr
    return parse_csv(result.stdout)


def kafkas(bootstrap: str, group: str, *args: str) -> dict[tuple[str, int], int]:
    output = run_kafka_tool(GROUP_TOOL, "--bootstrap-server", bootstrap, "--group", group,
                            *client_properties(bootstrap, "--command-config"),
                            "--reset-offsets", "--dry-run", "--export", *args)  # fmt: skip
    return parse_csv(output)


def parse_csv(text: str) -> dict[tuple[str, int], int]:
    lines = [line for line in text.splitlines() if not line.startswith("Warn:")]
    rows = [r for r in csv.reader(lines) if r]
    assert all(len(r) in (3, 4) for r in rows), text
    return {(r[-3], int(r[-2])): int(r[-1]) for r in rows}


def specifiers(topic: str, tmp_path: Path) -> list[list[str]]:
    plan = tmp_path / "plan.csv"
    plan.write_text(f"{topic},0,1\n{topic},1,7\n{topic},2,99\n")
    middle = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(OLD_MS / 1000 + 4.5)) + ".000"
    return [
        ["--to-earliest", "--topic", topic],
        ["--to-latest", "--topic", f"{topic}:1,2"],
        ["--to-current", "--topic", topic],
        ["--to-offset", "1000", "--topic", topic],
        ["--shift-by", "-4", "--topic", f"{topic}:0,1"],
        ["--shift-by", "30", "--all-topics"],
        ["--to-datetime", middle, "--topic", topic],
        ["--by-duration", "PT36H", "--topic", topic],
        ["--from-file", str(plan)],
    ]


def test_every_specifier_plans_what_kafkas_own_tool_plans(
    kafka: KafkaCluster, topic: str, tmp_path: Path
) -> None:
    group = unique("parity-")
    commit(kafka.bootstrap, group, {(topic, 0): 4, (topic, 1): 15})
    cases = specifiers(topic, tmp_path)
    # Every plan is a dry run: the 18 tool starts (a JVM, a Python) may overlap.
    with ThreadPoolExecutor(max_workers=4) as pool:
        theirs = pool.map(lambda args: kafkas(kafka.bootstrap, group, *args), cases)
        mine = pool.map(lambda args: ours(kafka.bootstrap, group, *args), cases)
        for args, expected, got in zip(cases, theirs, mine, strict=True):
            assert expected, args
            assert got == expected, args


def test_dry_run_changes_nothing_and_execute_moves_exactly_the_plan(
    kafka: KafkaCluster, topic: str, tmp_path: Path
) -> None:
    group = unique("reset-")
    commit(kafka.bootstrap, group, {(topic, 0): 4, (topic, 1): 15, (topic, 2): 20})
    admin = GroupAdmin(kafka.bootstrap)
    before = admin.committed(group)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
    dry = run_cli("offsets", "reset", group, "--to-offset", "8", "--topic", f"{topic}:0,1",
                  env=env)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing was changed" in dry.stdout
    assert admin.committed(group) == before

    exported = run_cli("offsets", "reset", group, "--shift-by", "-2", "--all-topics", "--export",
                       env=env)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    plan_file = tmp_path / "plan.csv"
    plan_file.write_text(exported.stdout)
    planned = parse_csv(exported.stdout)
    assert planned == {(topic, 0): 3, (topic, 1): 13, (topic, 2): 18}
    moved = run_cli("offsets", "reset", group, "--from-file", str(plan_file), "--execute",
                    env=env)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert admin.committed(group) == planned


def test_reset_is_refused_while_the_group_has_a_live_member(
    kafka: KafkaCluster, topic: str
) -> None:
    group = unique("live-")
    commit(kafka.bootstrap, group, {(topic, 0): 4})
    consumer = Consumer(
        client_config(kafka.bootstrap, **{"group.id": group, "enable.auto.commit": False})
    )
    consumer.subscribe([topic])
    admin = GroupAdmin(kafka.bootstrap)
    try:
        wait_for(lambda: (consumer.poll(0.2), consumer.assignment())[1], 60, "an assignment")
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
        result = run_cli("offsets", "reset", group, "--to-earliest", "--topic", topic, "--execute",
                         env=env)  # fmt: skip
        shown = run_cli("offsets", "show", group, env=env)
    finally:
        consumer.close()
    assert result.returncode == 2
    assert "live member" in result.stderr
    assert "nothing was changed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert admin.committed(group) == {(topic, 0): 4}
    assert shown.returncode == 0, shown.stderr
    assert "state STABLE, 1 member(s)" in shown.stdout


def test_a_projections_group_is_not_moved_alone(kafka: KafkaCluster, topic: str) -> None:
    group = "ecom-projection-orders"
    env = {"ECOM_TOPIC_PREFIX": "", "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
    result = run_cli("offsets", "reset", group, "--to-earliest", "--topic", topic, "--execute",
                     env=env)  # fmt: skip
    assert result.returncode == 2
    assert "ecom replay orders" in result.stderr


def test_a_flow_workers_wiped_state_starts_at_the_new_offsets(
    kafka: KafkaCluster, topology: Topology
) -> None:
    """Our workers trust the cursors in their state over the group's offsets (a partition
    without one starts at its log's first record): the wipe leaves a cursor at each new
    offset, or `--to-latest` would replay the whole history."""
    group = topology.flow_app("order")
    orders, changelog = topology.topic("orders").name, topology.changelog("order", "orders").name
    with kafka.producer() as producer:
        for i in range(12):
            producer.produce(orders, b"an event", f"o-{i}", partition=i % 2)
        row = {"row": Priced("o-0's cause").to_json(), "applied": {orders: 0}}
        producer.produce(changelog, orjson.dumps(row), b"o-0", partition=0)
    commit(kafka.bootstrap, group, {(orders, 0): 1, (orders, 1): 2})
    env = {"ECOM_TOPIC_PREFIX": topology.prefix, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
    result = run_cli("offsets", "reset", group, "--to-latest", "--topic", f"{orders}:0,1",
                     "--wipe-state", "--execute", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "their state starts at the new offsets (2 partition(s))" in result.stdout
    assert GroupAdmin(kafka.bootstrap).committed(group) == {(orders, 0): 6, (orders, 1): 6}
    table: Table[Priced] = Table(Priced, changelog, kafka.bootstrap)
    for partition in (0, 1):
        asyncio.run(table.ready(partition))
    cursor = {p: table.cursor(p, orders) for p in (0, 1)}
    assert (table.rows, cursor) == ({0: {}, 1: {}}, {0: 6, 1: 6}), "no row; at the new offsets"


def test_a_wipe_moves_every_partition_or_nothing(kafka: KafkaCluster, topology: Topology) -> None:
    """The wipe empties the state of every partition: moving some of them only would leave
    the others going on from their offsets without their state."""
    group = topology.flow_app("order")
    orders, changelog = topology.topic("orders").name, topology.changelog("order", "orders").name
    with kafka.producer() as producer:
        for i in range(4):
            producer.produce(orders, b"an event", f"o-{i}", partition=i % 2)
    commit(kafka.bootstrap, group, {(orders, 0): 1, (orders, 1): 1})
    env = {"ECOM_TOPIC_PREFIX": topology.prefix, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
    some = ("offsets", "reset", group, "--to-latest", "--topic", f"{orders}:0", "--wipe-state")
    refused = run_cli(*some, "--execute", env=env)
    assert refused.returncode == 2
    assert f"1 would not ({orders}:1); nothing was changed" in refused.stderr
    assert GroupAdmin(kafka.bootstrap).committed(group) == {(orders, 0): 1, (orders, 1): 1}
    never = topology.flow_app("payment")  # its changelog exists; it never committed
    nothing = run_cli("offsets", "reset", never, "--to-latest", "--all-topics", "--wipe-state",
                      "--execute", env=env)  # fmt: skip
    assert nothing.returncode == 2, "an empty scope would empty the state and move nothing"
    assert f"no partition of {never} to move" in nothing.stderr
    planned = run_cli("offsets", "reset", group, "--to-latest", "--all-topics", "--wipe-state",
                      env=env)  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert f"with --execute, also empties {changelog}" in planned.stdout


def test_a_scratch_topology_takes_its_groups_with_it(kafka: KafkaCluster) -> None:
    """Benchmarks and `ecom compare` run their workers under a scratch prefix; their
    consumer groups stayed on the cluster after every run."""
    admin = GroupAdmin(kafka.bootstrap)
    with scratch_topology(Topology.load(REPO / "topics.yaml"), kafka.bootstrap, "sgrp") as t:
        group = f"{t.prefix}worker"
        commit(kafka.bootstrap, group, {(t.topic("orders").name, 0): 0})
        assert group in {name for name, _, _ in admin.groups()}
    assert not [name for name, _, _ in admin.groups() if name.startswith(t.prefix)]
