"""Kill the projection worker at random instants while it consumes 100k events: the
final view is identical (same checksum) to a clean, uninterrupted run. (On SQLite; the
PostgreSQL run, whose DB-commit crashes are the store-specific part, takes a 30k log and
fewer kills to keep CI short.)

The log is published in chunks, one before each run of the worker, so every kill lands
before the end of the stream by construction (the last chunk is published only for the
final catch-up); the random part is only where within its chunk a kill lands.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from consumers.projections import PROJECTIONS
from consumers.store import Store, open_store
from ecom.process import kill, stop
from ecom.topology import Topology
from schemas import Event
from tests.conftest import KafkaCluster
from tests.runners import run_until_caught_up, runner_process, shop_log
from tests.support import wait_for

pytestmark = pytest.mark.kafka
DB_COMMIT_CRASHES = 3


def _size(store_url: str) -> tuple[int, int]:
    """Orders in the shop's log, and kills: 100k events and 10 kills on SQLite."""
    return (19_500, 10) if store_url.startswith("sqlite") else (6_000, 5)


def _position(store: Store) -> int:
    total = 0
    for name in PROJECTIONS:
        generation = store.active_generation(name)
        if generation is not None:
            total += sum(o.next_offset for o in store.offsets(name, generation).values())
    return total


def _total(kafka: KafkaCluster, topology: Topology) -> int:
    """How far every projection must read: its topics' ends (products is read twice)."""
    ends = kafka.ends([t.name for t in topology.topics()])
    return sum(
        offset
        for projection in PROJECTIONS.values()
        for (topic, _), offset in ends.items()
        if topic in {topology.topic(t).name for t in projection.topics}
    )


def _chunks(events: Sequence[Event], count: int) -> list[Sequence[Event]]:
    size = -(-len(events) // count)
    return [events[i : i + size] for i in range(0, len(events), size)]


def test_random_kills_leave_the_view_identical_to_a_clean_run(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path, store_url: str
) -> None:
    orders, kills = _size(store_url)
    events = shop_log(orders, seed=21)
    assert len(events) >= orders * 5
    chunks = _chunks(events, DB_COMMIT_CRASHES + kills + 1)
    rng = random.Random(1234)
    crashed_url = store_url  # SQLite and PostgreSQL in turn
    with open_store(crashed_url) as store:
        positions = [0]
        for _ in range(DB_COMMIT_CRASHES):
            kafka.seed(topology, chunks.pop(0))
            # Each chunk has orders and stock events, so two commits always come.
            commits = rng.randint(1, 2)
            with runner_process(
                topology, kafka.bootstrap, crashed_url, crash_after_db_commit=commits
            ) as worker:
                code = worker.process.wait(120)
                assert code == -signal.SIGKILL, "died between the DB and the Kafka commit"
            positions.append(_position(store))
        for _ in range(kills):
            kafka.seed(topology, chunks.pop(0))
            with runner_process(topology, kafka.bootstrap, crashed_url) as worker:
                wait_for(lambda: _position(store) > positions[-1], 150, "the worker to apply", 0.02)
                time.sleep(rng.uniform(0.0, 0.6))  # a random instant: the test's point
                assert kill(worker) == -signal.SIGKILL
            positions.append(_position(store))
        assert positions == sorted(positions), "no kill lost work the view had stored"
        assert len(chunks) == 1

        kafka.seed(topology, chunks.pop(0))  # the rest of the log, for the last run only
        total = _total(kafka, topology)
        assert positions[-1] < total
        with runner_process(topology, kafka.bootstrap, crashed_url) as worker:
            wait_for(lambda: _position(store) >= total, 300, "the last worker to catch up", 0.5)
            assert stop(worker, grace=60) == 0, "a clean stop on SIGTERM"

        clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
        for projection in PROJECTIONS.values():
            run_until_caught_up(projection, clean_url, topology, kafka.bootstrap, timeout=300)
        with open_store(clean_url) as clean:
            for name, projection in PROJECTIONS.items():
                assert store.checksum(projection, 1) == clean.checksum(projection, 1), name
            assert _position(store) == _position(clean) == total
