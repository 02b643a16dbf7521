"""A view whose cluster was wiped, or whose topic was recreated, is refused, not served."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.projections import PROJECTIONS
from consumers.store import Store, open_store
from ecom.cluster import LocalCluster
from ecom.kafka import TopicAdmin
from ecom.topics_plan import make_plan
from ecom.topology import Topology
from schemas import StockAdjusted
from tests.conftest import KafkaCluster
from tests.runners import run_until_caught_up
from tests.support import REPO, run_cli, scratch_cluster_env, wait_for

EVENT = json.dumps({"product_id": "p-1", "quantity": 3})


@pytest.fixture
def scratch_cluster(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A 1-node cluster of this test's own (other ports), with topics; wiped afterwards."""
    env = scratch_cluster_env(tmp_path, local_cluster) | {"KAFKA_BOOTSTRAP_SERVERS": ""}
    assert run_cli("cluster", "up", "--brokers", "1", env=env, timeout=180).returncode == 0
    yield env
    run_cli("cluster", "down", "--wipe", env=env, timeout=120)


def _project_once(env: dict[str, str], store_url: str) -> None:
    """Run the inventory projection until it has applied what is there, then stop it."""
    command = [
        sys.executable,
        "-m",
        "ecom",
        "projections",
        "run",
        "inventory",
        "--store",
        store_url,
    ]
    worker = subprocess.Popen(command, env=os.environ | env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        with open_store(store_url) as store:
            wait_for(lambda: _applied(store) > 0, 120, "the projection to apply the event", 0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(30)
        if worker.stderr is not None:
            worker.stderr.close()


def _applied(store: Store) -> int:
    generation = store.active_generation("inventory")
    if generation is None:
        return 0
    return sum(o.next_offset for o in store.offsets("inventory", generation).values())


@pytest.mark.local_cluster
def test_a_wiped_and_recreated_cluster_is_refused(
    scratch_cluster: dict[str, str], tmp_path: Path
) -> None:
    env = scratch_cluster
    store_url = f"sqlite:///{tmp_path / 'view.db'}"
    assert run_cli("topics", "apply", "--dev", env=env).returncode == 0
    for _ in range(3):  # more records than the new cluster's log will hold
        assert run_cli("produce", "StockAdjusted", "--data", EVENT, env=env).returncode == 0
    _project_once(env, store_url)

    assert run_cli("cluster", "down", "--wipe", env=env, timeout=120).returncode == 0
    assert run_cli("cluster", "up", "--brokers", "1", env=env, timeout=180).returncode == 0
    assert run_cli("topics", "apply", "--dev", env=env).returncode == 0
    assert run_cli("produce", "StockAdjusted", "--data", EVENT, env=env).returncode == 0

    result = run_cli("projections", "run", "inventory", "--store", store_url, env=env, timeout=120)
    assert result.returncode == 6
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: the inventory view was built from Kafka cluster ")
    assert (
        "refusing to serve a stale view: rebuild it with `ecom replay inventory`" in result.stderr
    )
    _rebuilt_from_the_new_log(env, store_url, records=1)


def test_a_recreated_topic_is_refused(
    kafka: KafkaCluster, topology: Topology, store_url: str
) -> None:
    # More records than the new log will hold: the old offsets are out of its reach.
    kafka.seed(topology, [StockAdjusted(product_id="p-1", quantity=n) for n in (1, 2, 3)])
    run_until_caught_up(PROJECTIONS["inventory"], store_url, topology, kafka.bootstrap)
    admin = TopicAdmin(kafka.bootstrap)
    inventory = topology.topic("inventory")
    admin.delete([inventory.name])
    only_inventory = Topology([inventory.spec], topology.prefix)
    wait_for(lambda: inventory.name not in admin.live_topics(), 60, "the topic to be gone")
    admin.execute(make_plan(only_inventory, {}, admin.broker_count(), dev=admin.broker_count() < 3))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "ECOM_TOPIC_PREFIX": topology.prefix}
    result = run_cli("projections", "run", "inventory", "--store", store_url, env=env, timeout=60)
    assert result.returncode == 6
    assert result.stderr == (
        "error: topic inventory was deleted and recreated since the inventory view was built; "
        "refusing to serve a stale view: rebuild it with `ecom replay inventory`\n"
    )
    _rebuilt_from_the_new_log(env, store_url, records=0)


def _rebuilt_from_the_new_log(env: dict[str, str], store_url: str, records: int) -> None:
    """The rebuild the refusal names works: the old view's offsets, in a log that is
    gone, are no mark for the replay to catch up with."""
    fresh = json.dumps({"product_id": "p-2", "quantity": 5})
    assert run_cli("produce", "StockAdjusted", "--data", fresh, env=env).returncode == 0
    replay = run_cli("replay", "inventory", "--store", store_url, env=env, timeout=120)
    assert replay.returncode == 0, replay.stderr
    with open_store(store_url) as store:
        assert store.active_generation("inventory") == 2
        assert _applied(store) == records + 1  # the new log's, not the old offsets (3)


def test_a_topic_recreated_under_a_running_runner_stops_it(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'view.db'}"
    kafka.seed(topology, [StockAdjusted(product_id="p-1", quantity=3)])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "ECOM_TOPIC_PREFIX": topology.prefix}
    command = [
        sys.executable,
        "-m",
        "ecom",
        "projections",
        "run",
        "inventory",
        "--store",
        store_url,
    ]
    worker = subprocess.Popen(command, env=os.environ | env, cwd=REPO, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        with open_store(store_url) as store:
            wait_for(lambda: _applied(store) > 0, 120, "the projection to apply the event", 0.2)
        admin = TopicAdmin(kafka.bootstrap)
        inventory = topology.topic("inventory")
        admin.delete([inventory.name])
        wait_for(lambda: inventory.name not in admin.live_topics(), 60, "the topic to be gone")
        only_inventory = Topology([inventory.spec], topology.prefix)
        admin.execute(make_plan(only_inventory, {}, admin.broker_count(), dev=False))
        code = worker.wait(60)
        _, errors = worker.communicate()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(30)
    assert code == 6, errors
    assert errors.splitlines()[-1] == (
        "error: topic inventory was deleted and recreated since the inventory view was built; "
        "refusing to serve a stale view: rebuild it with `ecom replay inventory`"
    )
