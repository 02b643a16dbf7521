"""Kill the projection worker at random instants while it consumes 100k events: the
final view is identical (same checksum) to a clean, uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from consumers.projections import PROJECTIONS
from consumers.store import Store, open_store
from ecom.kafka import end_offsets
from ecom.topology import Topology
from tests.conftest import KafkaTarget
from tests.runners import publish, run_until_caught_up, shop_log
from tests.support import REPO, wait_for

pytestmark = pytest.mark.kafka
KILLS = 10
DB_COMMIT_CRASHES = 3


@contextmanager
def _running(
    topology: Topology, bootstrap: str, store_url: str, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `ecom projections run` in another process; make sure it is gone afterwards."""
    command = [sys.executable, "-m", "ecom", "projections", "run", "--store", store_url,
               "--bootstrap", bootstrap, *extra]  # fmt: skip
    env = os.environ | {"ECOM_TOPIC_PREFIX": topology.prefix}
    worker = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(30)


def _position(store: Store) -> int:
    total = 0
    for name in PROJECTIONS:
        generation = store.active_generation(name)
        if generation is not None:
            total += sum(o.next_offset for o in store.offsets(name, generation).values())
    return total


def test_random_kills_leave_the_view_identical_to_a_clean_run(
    kafka: KafkaTarget, topology: Topology, tmp_path: Path, store_url: str
) -> None:
    events = shop_log(19_500, seed=21)
    assert len(events) >= 100_000
    publish(topology, kafka.bootstrap, events)
    ends = end_offsets(kafka.bootstrap, [t.name for t in topology.topics()])
    # Every projection reads its topics to the end (products is read by two of them).
    total = sum(
        offset
        for projection in PROJECTIONS.values()
        for (topic, _), offset in ends.items()
        if topic in {topology.topic(t).name for t in projection.topics}
    )

    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    for projection in PROJECTIONS.values():
        run_until_caught_up(projection, clean_url, topology, kafka.bootstrap, timeout=300)

    crashed_url = store_url  # SQLite and PostgreSQL in turn
    rng = random.Random(1234)
    with open_store(crashed_url) as store:
        positions = [0]
        for _ in range(DB_COMMIT_CRASHES):
            commits = str(rng.randint(1, 4))
            with _running(
                topology, kafka.bootstrap, crashed_url, "--crash-after-db-commit", commits
            ) as worker:
                assert worker.wait(120) == -signal.SIGKILL, (
                    "died between the DB and the Kafka commit"
                )
            positions.append(_position(store))
        for _ in range(KILLS):
            with _running(topology, kafka.bootstrap, crashed_url) as worker:
                # Kill at a random instant once it is applying: this sleep is the test's point.
                wait_for(lambda: _position(store) > positions[-1], 150, "the worker to apply", 0.02)
                time.sleep(rng.uniform(0.0, 0.6))
                worker.send_signal(signal.SIGKILL)
                assert worker.wait(30) == -signal.SIGKILL
            positions.append(_position(store))
        assert positions == sorted(positions), "no kill lost work the view had stored"
        assert positions[-1] < total, "every kill landed before the end of the stream"

        with _running(topology, kafka.bootstrap, crashed_url) as worker:
            wait_for(lambda: _position(store) >= total, 300, "the last worker to catch up", 0.5)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0, "a clean stop on SIGTERM"

        with open_store(clean_url) as clean:
            for name, projection in PROJECTIONS.items():
                assert store.checksum(projection, 1) == clean.checksum(projection, 1), name
            assert _position(store) == _position(clean) == total
