"""Helpers for order-flow tests: run the workers, follow orders, check the invariants."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from ecom.errors import InvalidEvent
from ecom.topology import Topology
from schemas import (
    Codec,
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    OrderExpired,
    StockAdjusted,
    StockReservationRejected,
    StockReservationRequested,
    StockReserved,
)
from schemas.stock import StockLevel, apply_stock
from streams.worker import SERVICES
from tests.support import REPO, unique, wait_for

FINAL_TYPES = (OrderConfirmed, OrderCancelled, OrderExpired)


class Workers:
    """The four order-flow workers, each in a process of its own."""

    def __init__(self, topology: Topology, bootstrap: str, env: dict[str, str]) -> None:
        self.env = (
            os.environ
            | env
            | {"ECOM_TOPIC_PREFIX": topology.prefix, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    def start(self, service: str) -> None:
        command = [sys.executable, "-m", "ecom", "worker", service]
        logs = os.environ.get("ECOM_TEST_WORKER_LOGS")  # a folder, to debug a flow test
        output: Any = subprocess.DEVNULL
        if logs:
            command.append("-v")
            output = (Path(logs) / f"{service}-{time.time():.0f}.log").open("w")
            self._logs.append(output)
        self.processes[service] = subprocess.Popen(
            command, env=self.env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT
        )

    def kill(self, service: str) -> None:
        """SIGKILL a worker, as a crash would."""
        process = self.processes.pop(service)
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop(self, service: str) -> int:
        """Stop a worker gracefully; return its exit code."""
        process = self.processes.pop(service)
        process.send_signal(signal.SIGTERM)
        return process.wait(60)

    def alive(self, service: str) -> bool:
        process = self.processes.get(service)
        return process is not None and process.poll() is None

    def close(self) -> None:
        for service in list(self.processes):
            process = self.processes.pop(service)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        for log in self._logs:
            log.close()


@contextmanager
def running_workers(topology: Topology, bootstrap: str, **env: str) -> Iterator[Workers]:
    workers = Workers(topology, bootstrap, env)
    try:
        for service in SERVICES:
            workers.start(service)
        yield workers
    finally:
        workers.close()


@dataclass
class Log:
    """Everything read back from the flow's topics, decoded, in per-partition order."""

    by_topic: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    seen: set[str] = field(default_factory=set)
    arrived: dict[str, float] = field(default_factory=dict)


class Follower:
    """Reads the flow's topics in the background (no group: every partition)."""

    def __init__(self, topology: Topology, bootstrap: str, names: tuple[str, ...]) -> None:
        self.topology = topology
        self.log = Log()
        self._names = {topology.topic(n).name: n for n in names}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("follow"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Follower:
        self._consumer.subscribe(list(self._names))
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._consumer.close()

    def _run(self) -> None:
        codec = Codec()
        read_up_to: dict[tuple[str, int], int] = {}
        while not self._stop.is_set():
            for message in self._consumer.consume(1000, timeout=0.2):
                if message.error() is not None:
                    continue
                # A rebalance (a broker was killed) sends a group without commits back to
                # the earliest offsets: keep each record once, in log order.
                where = (message.topic() or "", message.partition() or 0)
                if (message.offset() or 0) < read_up_to.get(where, 0):
                    continue
                read_up_to[where] = (message.offset() or 0) + 1
                event = codec.decode(message.value())
                with self._lock:
                    self.log.by_topic[self._names[message.topic() or ""]].append(event)
                    self.log.arrived.setdefault(event.event_id, time.monotonic())

    def finals(self) -> dict[str, Event]:
        """Return each order's first final event (confirmed, cancelled, expired)."""
        with self._lock:
            result: dict[str, Event] = {}
            for event in self.log.by_topic["orders"]:
                if isinstance(event, FINAL_TYPES):
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
        if isinstance(event, FINAL_TYPES):
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
