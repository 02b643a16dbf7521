"""How a long replay splits its partitions between processes (consumers/replay.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from consumers.projection import Projection
from consumers.projections import PROJECTIONS
from consumers.replay import Replay, Share
from consumers.store import SqliteStore
from ecom.settings import get_settings
from ecom.topology import Topology
from tests.support import REPO

TOPOLOGY = Topology.load(REPO / "topics.yaml")
PRICING = PROJECTIONS["pricing"]  # two topics: pricing and products
PARTITIONS = [(TOPOLOGY.topic(t).name, p) for t in PRICING.topics for p in range(6)]
RUNNER: Any = SimpleNamespace(generation=1)


@pytest.fixture
def threshold(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("ECOM_REPLAY_PARALLEL_FROM", "100")
    monkeypatch.delenv("ECOM_REPLAY_PROCESSES", raising=False)
    get_settings.cache_clear()
    yield 100
    get_settings.cache_clear()


def _shares(tmp_path: Path, projection: Projection, ends: dict[tuple[str, int], int],
            processes: int | None = 4) -> list[Share]:  # fmt: skip
    with SqliteStore(f"sqlite:///{tmp_path / 'view.db'}") as store:
        replay = Replay(projection, store, TOPOLOGY, "127.0.0.1:9", print, processes)
        return replay._shares(RUNNER, list(ends), ends, [])


def test_partitions_of_one_number_go_to_one_process_in_every_topic(
    tmp_path: Path, threshold: int
) -> None:
    ends = dict.fromkeys(PARTITIONS, threshold)
    shares = _shares(tmp_path, PRICING, ends)
    numbers = [sorted({p for _, p in share.ends}) for share in shares]
    assert numbers == [[0, 4], [1, 5], [2], [3]]
    for share in shares:
        assert {t for t, _ in share.ends} == {TOPOLOGY.topic(t).name for t in PRICING.topics}
    merged = {tp: end for share in shares for tp, end in share.ends.items()}
    assert merged == ends
    assert sum(len(s.ends) for s in shares) == len(ends)


def test_a_short_replay_or_a_projection_that_cannot_be_split_stays_in_one_process(
    tmp_path: Path, threshold: int
) -> None:
    ends = dict.fromkeys(PARTITIONS, threshold)
    short = dict.fromkeys(PARTITIONS, (threshold - 1) // len(PARTITIONS))
    assert len(_shares(tmp_path, PRICING, short)) == 1
    assert len(_shares(tmp_path, PRICING, ends, processes=1)) == 1
    grown = ends | {(TOPOLOGY.topic("products").name, 6): threshold}  # 7 against 6
    assert len(_shares(tmp_path, PRICING, grown)) == 1

    class Unsplittable(type(PRICING)):  # type: ignore[misc]
        partition_local = False

    assert len(_shares(tmp_path, Unsplittable(), ends)) == 1
    assert len(_shares(tmp_path, PRICING, ends, processes=16)) == 6  # one per number at most
    assert len(_shares(tmp_path, PRICING, ends, processes=None)) == 1, "opt-in: 1 by default"
