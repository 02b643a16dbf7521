"""`ecom replay`: rebuild beside the live view, switch atomically, or keep a view of the past."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consumers.api import create_app
from consumers.engine import Engine
from consumers.projection import Envelope, Position
from consumers.projections import PROJECTIONS
from consumers.store import open_store
from ecom.topology import Topology
from schemas import Codec, OrderCreated
from tests.conftest import KafkaCluster
from tests.runners import (
    caught_up,
    live_orders_view,
    run_until_caught_up,
    running,
    shop_log,
    view_env,
)
from tests.support import keyed, run_cli, wait_for

pytestmark = pytest.mark.kafka
ORDERS = PROJECTIONS["orders"]
INDEXED = ("user_id", "status")  # Order.TABLE.indexes


class ReadLoad:
    """Clients reading the whole order list over HTTP, in a loop, until stopped."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.counts: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self.client.get("/orders", params={"limit": 500})
            if answer.status_code != 200:
                self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                continue
            self.counts.append(len(answer.json()["data"]["items"]))


def test_replay_switches_under_read_load_and_equals_a_clean_run(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    events = shop_log(300, seed=11)
    kafka.seed(topology, events)
    live_url = f"sqlite:///{tmp_path / 'live.db'}"
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    run_until_caught_up(ORDERS, clean_url, topology, kafka.bootstrap)
    total = sum(isinstance(e, OrderCreated) for e in events)
    keys, auth = keyed("queries")
    with (
        running(ORDERS, live_url, topology, kafka.bootstrap) as live,
        open_store(live_url) as store,
        TestClient(create_app(store, keys), headers=auth) as client,
    ):
        wait_for(lambda: caught_up(store, live, kafka.bootstrap), 120, "the live view", 0.2)
        with ReadLoad(client) as load:
            wait_for(lambda: len(load.counts) > 5, 60, "reads before the replay")
            result = run_cli("replay", "orders", env=view_env(kafka.bootstrap, topology, live_url))
            wait_for(lambda: len(load.counts) > 5 + 5, 60, "reads after the replay")
        assert result.returncode == 0, result.stderr
        assert "the view now reads generation 2 (was 1)" in result.stdout
        assert not load.failures, load.failures[:3]
        assert set(load.counts) == {total}, "a read saw a half-built view"
        with open_store(clean_url) as clean:
            assert store.checksum(ORDERS, 2) == clean.checksum(ORDERS, 1)
        assert _indexes(store, 2) == {f"orders__g2__{c}" for c in INDEXED}  # built last
        # The live worker follows the switch and carries on in the new generation.
        more = [e for e in shop_log(320, seed=11) if isinstance(e, OrderCreated)][300:]
        kafka.seed(topology, more)
        wait_for(lambda: live.generation == 2 and caught_up(store, live, kafka.bootstrap),
                 60, "the live worker to carry on in generation 2")  # fmt: skip
        assert len(client.get("/orders", params={"limit": 500}).json()["data"]["items"]) == 320


def fold_of(records: list[Any], topology: Topology, store_url: str) -> str:
    """The orders view of exactly these records, folded in log order; return its checksum."""
    codec, store = Codec(), open_store(store_url)
    store.create_generation(ORDERS, 1, "active")
    engine = Engine(ORDERS, store, 1)
    logical = {topology.topic(t).name: t for t in ORDERS.topics}
    envelopes = [
        Envelope(codec.decode(m.value()), Position(logical[m.topic()], m.partition(), m.offset()))
        for m in records
    ]
    engine.commit(engine.fold(envelopes), [])
    checksum = store.checksum(ORDERS, 1)
    store.close()
    return checksum


def test_until_builds_the_view_of_the_past_beside_the_live_one(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    url, env = live_orders_view(kafka, topology, tmp_path, 150, seed=12)
    names = [topology.topic(t).name for t in ORDERS.topics]
    everything = kafka.read(names, _count(kafka.bootstrap, names))
    by_partition: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for message in sorted(everything, key=lambda m: (m.topic(), m.partition(), m.offset())):
        by_partition[(message.topic(), message.partition())].append(message)
    middle = sorted(m.timestamp()[1] for m in everything)[len(everything) // 2]
    stamp = _iso(middle)
    cases: list[tuple[str, Callable[[Any], bool]]] = [
        ("7", lambda m: m.offset() < 7),
        (stamp, lambda m: m.timestamp()[1] < middle),
    ]
    for number, (until, wanted) in enumerate(cases, start=2):
        result = run_cli("replay", "orders", "--until", until, env=env)
        assert result.returncode == 0, result.stderr
        assert f"generation {number} holds orders as of {until}" in result.stdout
        chosen = [m for part in by_partition.values() for m in part if wanted(m)]
        expected = fold_of(chosen, topology, f"sqlite:///{tmp_path / f'fold{number}.db'}")
        with open_store(url) as store:
            assert store.checksum(ORDERS, number) == expected
            assert store.active_generation("orders") == 1
            assert _indexes(store, number) == {f"orders__g{number}__{c}" for c in INDEXED}


def test_an_interrupted_replay_must_be_resumed_or_dropped(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    kafka.seed(topology, shop_log(50, seed=13))
    url = f"sqlite:///{tmp_path / 'view.db'}"
    with open_store(url) as store:
        store.create_generation(ORDERS, 1, "replaying")  # as a killed replay leaves it
    env = view_env(kafka.bootstrap, topology, url)
    refused = run_cli("replay", "orders", env=env)
    assert refused.returncode == 2
    assert "--resume" in refused.stderr
    resumed = run_cli("replay", "orders", "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "the view now reads generation 1 (was None)" in resumed.stdout
    with open_store(url) as store:
        store.create_generation(ORDERS, 2, "replaying")
    dropped = run_cli("replay", "orders", "--drop", env=env)
    assert dropped.returncode == 0, dropped.stderr
    with open_store(url) as store:
        assert [g.generation for g in store.generations("orders")] == [1]


def _indexes(store: Any, generation: int) -> set[str]:
    rows = store.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (f"orders__g{generation}",),
    )
    return {row["name"] for row in rows}


def _count(bootstrap: str, names: list[str]) -> int:
    from ecom.kafka import log_ends

    return sum(log_ends(bootstrap, names).values())


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
