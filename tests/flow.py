"""Helpers for order-flow tests: run the workers, follow orders, check the invariants."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ecom.errors import InvalidEvent
from ecom.kafka import Message, TopicReader
from ecom.process import Children, Spec
from ecom.topology import FLOW_SERVICES as SERVICES
from ecom.topology import Topology
from schemas import (
    Codec,
    Event,
    OrderCreated,
    StockAdjusted,
    StockReservationRejected,
    StockReservationRequested,
    StockReserved,
)
from schemas.rules.order import FINAL_EVENTS
from schemas.rules.stock import StockLevel, apply_stock
from tests.support import REPO, wait_for


class Workers(Children):
    """The order-flow workers, each in a process of its own (named by service)."""

    def __init__(self, topology: Topology, bootstrap: str, env: dict[str, str]) -> None:
        super().__init__()
        self.env = env | {
            "ECOM_TOPIC_PREFIX": topology.prefix,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        }
        self.logs = os.environ.get("ECOM_TEST_WORKER_LOGS")  # a folder, to debug a flow test

    def start_worker(self, service: str) -> None:
        log = Path(self.logs) / f"{service}-{time.time():.0f}.log" if self.logs else None
        args = ("worker", service, *(["-v"] if self.logs else []))
        self.start(Spec(service, args, self.env, log, cwd=REPO))


@contextmanager
def running_workers(topology: Topology, bootstrap: str, **env: str) -> Iterator[Workers]:
    with Workers(topology, bootstrap, env) as workers:
        for service in SERVICES:
            workers.start_worker(service)
        yield workers


@dataclass
class Log:
    """Everything read back from the flow's topics, decoded, in per-partition order."""

    by_topic: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    seen: set[str] = field(default_factory=set)
    arrived: dict[str, float] = field(default_factory=dict)


class Follower:
    """Reads the flow's topics in the background (every partition, no group)."""

    def __init__(self, topology: Topology, bootstrap: str, names: tuple[str, ...]) -> None:
        self.topology = topology
        self.log = Log()
        self._names = {topology.topic(n).name: n for n in names}
        self._codec = Codec()
        self._lock = threading.Lock()
        self._reader = TopicReader(bootstrap, list(self._names), self._note, name="follower")

    def __enter__(self) -> Follower:
        self._reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._reader.stop()

    def _note(self, message: Message) -> None:
        event = self._codec.decode(message.value())
        with self._lock:
            self.log.by_topic[self._names[message.topic() or ""]].append(event)
            self.log.arrived.setdefault(event.event_id, time.monotonic())

    def finals(self) -> dict[str, Event]:
        """Return each order's first final event (confirmed, cancelled, expired)."""
        with self._lock:
            result: dict[str, Event] = {}
            for event in self.log.by_topic["orders"]:
                if isinstance(event, FINAL_EVENTS):
                    result.setdefault(event.order_id, event)
            return result

    def wait_final(self, order_ids: set[str], timeout: float) -> dict[str, Event]:
        wait_for(
            lambda: order_ids <= set(self.finals()),
            timeout,
            f"{len(order_ids)} orders to reach a final state",
            0.5,
        )
        return self.finals()


def check_invariants(log: Log, orders: list[OrderCreated]) -> dict[str, int]:
    """Check the flow's promises over the whole log; return counts by outcome."""
    finals: dict[str, set[str]] = defaultdict(set)
    for event in log.by_topic["orders"]:
        if isinstance(event, FINAL_EVENTS):
            finals[event.order_id].add(type(event).__name__)
    missing = [o.order_id for o in orders if o.order_id not in finals]
    assert not missing, f"{len(missing)} orders never reached a final state, e.g. {missing[:3]}"
    twice = {o: s for o, s in finals.items() if len(s) > 1}
    assert not twice, f"orders with two final states: {list(twice.items())[:3]}"

    decided = _fold_inventory(log.by_topic["inventory"])
    answers: dict[tuple[str, str], bool] = {}
    for event in log.by_topic["reservations"]:
        if isinstance(event, (StockReserved, StockReservationRejected)):
            answers.setdefault((event.order_id, event.product_id), isinstance(event, StockReserved))
    wrong = {
        k: (v, decided.decisions.get(k))
        for k, v in answers.items()
        if decided.decisions.get(k) != v
    }
    assert not wrong, (
        f"worker answers differ from the log's: {list(wrong.items())[:3]}; "
        f"{_history(log, next(iter(wrong))[1])}"
    )

    confirmed = {o for o, s in finals.items() if s == {"OrderConfirmed"}}
    wanted: dict[str, int] = defaultdict(int)
    for order in orders:
        if order.order_id in confirmed:
            for line in order.lines:
                wanted[line.product_id] += line.quantity
    sold = {p: level.sold for p, level in decided.levels.items() if level.sold}
    assert sold == dict(wanted), "units sold differ from confirmed quantities"
    dangling = {
        p: dict(level.reservations) for p, level in decided.levels.items() if level.reservations
    }
    assert not dangling, f"reservations left dangling: {list(dangling.items())[:3]}"
    counts: dict[str, int] = defaultdict(int)
    for states in finals.values():
        counts[next(iter(states))] += 1
    return dict(counts)


def _history(log: Log, product: str) -> str:
    """A product's inventory events and answers, for a failure message."""
    lines = [
        f"{type(e).__name__}({getattr(e, 'order_id', '')},{getattr(e, 'quantity', '')})"
        for e in log.by_topic["inventory"]
        if getattr(e, "product_id", None) == product
    ]
    return f"{product} inventory log: {' '.join(lines)[-3000:]}"


@dataclass
class Folded:
    levels: dict[str, StockLevel]
    decisions: dict[tuple[str, str], bool]


def _fold_inventory(events: list[Event]) -> Folded:
    """Fold the inventory log with the stock rules, checking stock at every step."""
    levels: dict[str, StockLevel] = defaultdict(StockLevel)
    decisions: dict[tuple[str, str], bool] = {}
    for event in events:
        product = str(event.model_dump()["product_id"])
        try:
            level, decision = apply_stock(levels[product], event)
        except InvalidEvent:
            assert isinstance(event, StockAdjusted)
            continue
        assert level.on_hand >= 0, f"{product}: on hand below zero"
        assert level.available >= 0, f"{product}: available below zero"
        levels[product] = level
        if decision is not None and isinstance(event, StockReservationRequested):
            decisions.setdefault((event.order_id, product), decision.reserved)
    return Folded(dict(levels), decisions)
