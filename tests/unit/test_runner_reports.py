"""The projection runner tells Kafka the offsets it stored (for the lag tooling) at most
once a second while records flow, and at once when a poll comes back empty. Kafka is
stood in for by a consumer that hands out records and notes commits: what is tested is
the runner's own bookkeeping, with its clock stepped by hand."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from consumers.projections import PROJECTIONS
from consumers.runner import REPORT_EVERY_S, ProjectionRunner
from consumers.store import OffsetRow, open_store
from ecom.topology import Topology

TOPIC = "inventory"
ROOT = Path(__file__).resolve().parents[2]


class Record:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class StandIn:
    """Hands out the records queued for each poll; notes every commit."""

    def __init__(self) -> None:
        self.polls: list[list[Record]] = []
        self.commits: list[list[tuple[str, int, int]]] = []

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Record]:
        if num_messages > 1 or not self.polls:
            return []  # take() asks for one, then for the rest: the rest is empty
        return self.polls.pop(0)

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the runner's clock
    return now


def test_commits_are_throttled_while_records_flow_and_sent_when_idle(
    tmp_path: Path, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = Topology.load(ROOT / "topics.yaml")
    with open_store(f"sqlite:///{tmp_path / 'view.db'}") as store:
        runner = ProjectionRunner(PROJECTIONS["inventory"], store, topology,
                                  "127.0.0.1:9", generation=1)  # fmt: skip
        runner.next_offsets[(TOPIC, 0)] = 0

        def apply(_: Any, messages: list[Record], __: Any) -> list[OffsetRow]:
            return [OffsetRow(TOPIC, 0, messages[-1].offset() + 1)]

        monkeypatch.setattr(runner, "apply", apply)
        consumer = StandIn()

        def step(offset: int | None) -> bool:
            consumer.polls.append([] if offset is None else [Record(offset)])
            return runner._step(consumer, None)  # type: ignore[arg-type]

        start = clock[0]
        assert step(0)
        assert consumer.commits == [[(TOPIC, 0, 1)]], "the first batch is told at once"
        clock[0] = start + REPORT_EVERY_S / 2
        assert step(1)
        assert step(2)
        assert len(consumer.commits) == 1, "within a second of the last commit: none"
        clock[0] = start + REPORT_EVERY_S
        assert step(3)
        assert consumer.commits[-1] == [(TOPIC, 0, 4)], "a second on: the latest offset"
        assert step(4)
        assert len(consumer.commits) == 2
        assert not step(None)
        assert consumer.commits[-1] == [(TOPIC, 0, 5)], "an empty poll tells what is left"
        assert not step(None)
        assert len(consumer.commits) == 3, "nothing new, nothing sent"
