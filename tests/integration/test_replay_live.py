"""Replay and projection runners while the log grows: live traffic, two writers of one
view, runners killed and restarted on other hosts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest

from consumers.projections import PROJECTIONS
from consumers.projections.orders import Order
from consumers.runner import ProjectionRunner
from consumers.store import Store, open_store, table_name
from ecom.process import Spec, spawn, stop
from ecom.topology import Topology
from schemas import Codec, Event, OrderCreated
from tests.conftest import KafkaCluster
from tests.runners import (
    caught_up,
    live_orders_view,
    run_until_caught_up,
    runner_process,
    running,
    shop_log,
    view_env,
)
from tests.support import REPO, run_cli, unique, wait_for

pytestmark = pytest.mark.kafka
ORDERS = PROJECTIONS["orders"]
RESTARTS = 4


def _orders_in_log(kafka: KafkaCluster, topology: Topology) -> set[str]:
    names = [topology.topic("orders").name]
    codec = Codec()
    records = kafka.read(names, sum(kafka.ends(names).values()))
    events = [codec.decode(m.value()) for m in records]
    return {e.order_id for e in events if isinstance(e, OrderCreated)}


def _rows(store: Store, generation: int) -> int:
    name = table_name(Order.TABLE, generation)
    return int(store.fetch(f"SELECT COUNT(*) AS n FROM {name}")[0]["n"])


def _clean_checksum(kafka: KafkaCluster, topology: Topology, tmp_path: Path) -> str:
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    run_until_caught_up(ORDERS, clean_url, topology, kafka.bootstrap)
    with open_store(clean_url) as clean:
        return clean.checksum(ORDERS, 1)


def test_replay_under_live_traffic_switches_to_the_fold_of_the_whole_log(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    kafka.seed(topology, shop_log(400, seed=17))
    url = f"sqlite:///{tmp_path / 'live.db'}"
    env = view_env(kafka.bootstrap, topology, url)
    orders = [topology.topic("orders").name]
    with running(ORDERS, url, topology, kafka.bootstrap) as live, open_store(url) as store:
        wait_for(lambda: caught_up(store, live, kafka.bootstrap), 120, "the live view", 0.2)
        before = sum(kafka.ends(orders).values())
        args = ("simulate", "--orders", "60000", "--rate", "300", "--seed", "18")
        simulate = spawn(Spec("simulate", args, env, cwd=REPO))
        try:
            wait_for(lambda: sum(kafka.ends(orders).values()) > before + 100, 60, "traffic")
            # Two processes fold the log side by side, the catch-up and switch run after.
            parallel = env | {"ECOM_REPLAY_PROCESSES": "2", "ECOM_REPLAY_PARALLEL_FROM": "0"}
            replay = run_cli("replay", "orders", env=parallel, timeout=300)
            traffic_outlived_the_replay = simulate.alive()
        finally:
            stop(simulate)
        assert replay.returncode == 0, replay.stderr
        assert "the view now reads generation 2 (was 1)" in replay.stdout
        assert "folding in 2 processes side by side" in replay.stdout
        assert traffic_outlived_the_replay, "orders were published during the whole replay"
        wait_for(lambda: live.generation == 2 and caught_up(store, live, kafka.bootstrap),
                 120, "the live runner to carry on in generation 2")  # fmt: skip
        published = _orders_in_log(kafka, topology)
        assert _rows(store, 2) == len(published)
        checksum = store.checksum(ORDERS, 2)
    assert checksum == _clean_checksum(kafka, topology, tmp_path)


def test_a_runner_whose_partitions_another_wrote_is_fenced_and_rereads(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    events = shop_log(400, seed=19)
    first, second = _halves([e for e in events if e.domain in ("order", "payment")])
    url = f"sqlite:///{tmp_path / 'view.db'}"
    kafka.seed(topology, first)
    stalled, go_on = threading.Event(), threading.Event()

    def stall_after_first_batch(_: ProjectionRunner) -> None:
        if not go_on.is_set():
            stalled.set()
            go_on.wait(120)

    slow = ProjectionRunner(ORDERS, open_store(url), topology, kafka.bootstrap)
    failures: list[BaseException] = []
    thread = threading.Thread(target=_run, args=(slow, stall_after_first_batch, failures))
    thread.start()
    try:
        wait_for(stalled.is_set, 120, "the first runner's first batch")
        kafka.seed(topology, second)  # the stalled runner has read none of it
        with open_store(url) as store:
            # Another runner (as after a rebalance the stalled one has not seen) writes
            # the same view up to the end of the log.
            with running(ORDERS, url, topology, kafka.bootstrap, group=unique("g")) as other:
                wait_for(lambda: caught_up(store, other, kafka.bootstrap), 120, "the other")
            go_on.set()
            wait_for(lambda: slow.progress.fenced > 0, 60, "the stalled runner to be fenced")
            wait_for(lambda: caught_up(store, slow, kafka.bootstrap), 60, "the fenced runner")
            checksum = store.checksum(ORDERS, 1)
    finally:
        go_on.set()
        slow.stop()
        thread.join(60)
    assert not failures, failures
    assert checksum == _clean_checksum(kafka, topology, tmp_path)


def test_two_hosts_one_runner_killed_and_restarted_in_a_loop_equal_a_clean_run(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    events = shop_log(3000, seed=20)
    chunks = _chunks([e for e in events if e.domain in ("order", "payment")], RESTARTS + 1)
    url = f"sqlite:///{tmp_path / 'view.db'}"
    with (
        open_store(url) as store,
        runner_process(topology, kafka.bootstrap, url, "orders", env={"ECOM_HOST_ID": "a"}),
    ):
        for number, chunk in enumerate(chunks[:-1]):
            before = _position(store)
            kafka.seed(topology, chunk)
            host = {"ECOM_HOST_ID": f"b{number}"}  # a new member: a rebalance every time
            with runner_process(topology, kafka.bootstrap, url, "orders", env=host):
                wait_for(partial(_moved, store, before), 120, "a runner to apply", 0.05)
        kafka.seed(topology, chunks[-1])
        total = sum(kafka.ends([topology.topic("orders").name]).values())
        wait_for(lambda: _position(store) >= total, 180, "host a to read everything", 0.5)
        checksum = store.checksum(ORDERS, 1)
    assert checksum == _clean_checksum(kafka, topology, tmp_path)


def test_a_parallel_replay_whose_process_dies_says_so_and_resumes_to_the_same_view(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    url, env = live_orders_view(kafka, topology, tmp_path, 400, seed=23)
    env |= {"ECOM_REPLAY_PROCESSES": "2", "ECOM_REPLAY_PARALLEL_FROM": "0"}
    # Each process has partitions to read, so each dies after its first stored batch.
    killed = run_cli("replay", "orders", env=env | {"ECOM_FAULTS": "crash-after-db-commit=1"})
    assert killed.returncode == 7, killed.stderr
    assert (
        "error: a process of the orders replay died (killed by SIGKILL); `ecom replay "
        "orders --resume` carries on from what it stored" in killed.stderr
    )
    assert "Traceback" not in killed.stderr
    resumed = run_cli("replay", "orders", "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "folding in 2 processes side by side" in resumed.stdout
    assert "the view now reads generation 2 (was 1)" in resumed.stdout
    with open_store(url) as store:
        assert store.checksum(ORDERS, 2) == store.checksum(ORDERS, 1)


def test_retired_generations_go_after_a_switch_and_with_gc(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    url, env = live_orders_view(kafka, topology, tmp_path, 30, seed=22)
    for _ in range(3):
        assert run_cli("replay", "orders", env=env).returncode == 0
    with open_store(url) as store:
        states = {g.generation: g.state for g in store.generations("orders")}
    # ECOM_KEEP_GENERATIONS=1, and the one retired a moment ago stays for live runners.
    assert states == {2: "retired", 3: "retired", 4: "active"}
    gc = run_cli("replay", "orders", "--gc", env=env)
    assert gc.returncode == 0, gc.stderr
    assert gc.stdout == (
        "dropped 1 retired generation(s) of orders: [2]\n"
        "kept generation 3: retired by a switch less than 30s ago, live runners may still "
        "write to it\n"
    )
    with open_store(url) as store, store.transaction() as connection:
        # As if the switch were a minute old.
        connection.execute("UPDATE ecom_views SET switched_at = '2000-01-01T00:00:00+00:00'")
    gc = run_cli("replay", "orders", "--gc", env=env)
    assert gc.stdout == "dropped 1 retired generation(s) of orders: [3]\n"
    with open_store(url) as store:
        assert [g.generation for g in store.generations("orders")] == [4]
        tables = store.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert table_name(Order.TABLE, 3) not in {t["name"] for t in tables}


def _run(runner: ProjectionRunner, on_batch: object, failures: list[BaseException]) -> None:
    try:
        runner.run(on_batch)  # type: ignore[arg-type]
    except BaseException as error:  # noqa: BLE001 - checked by the test
        failures.append(error)


def _moved(store: Store, before: int) -> bool:
    return _position(store) > before


def _position(store: Store) -> int:
    generation = store.active_generation("orders")
    if generation is None:
        return 0
    return sum(o.next_offset for o in store.offsets("orders", generation).values())


def _halves(events: Sequence[Event]) -> tuple[Sequence[Event], Sequence[Event]]:
    middle = len(events) // 2
    return events[:middle], events[middle:]


def _chunks(events: Sequence[Event], count: int) -> list[Sequence[Event]]:
    size = -(-len(events) // count)
    return [events[i : i + size] for i in range(0, len(events), size)]
