"""Helpers for order-flow tests: run the workers, follow orders, check the invariants."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ecom.errors import DecodeError, InvalidEvent
from ecom.kafka import Message, TopicReader
from ecom.process import Children, Spec
from ecom.topology import FLOW_SERVICES as SERVICES
from ecom.topology import Topology
from schemas import (
    Codec,
    Event,
    OrderConfirmed,
    OrderCreated,
    PaymentRefunded,
    StockAdjusted,
    StockReservationRejected,
    StockReservationRequested,
    StockReserved,
)
from schemas.rules.order import FINAL_EVENTS
from schemas.rules.stock import StockLevel, apply_stock
from tests.support import REPO, wait_for

T = TypeVar("T")


class Workers(Children):
    """The order-flow workers, each in a process of its own, named `service` (or
    `service-2` for a second one of a service)."""

    def __init__(self, topology: Topology, bootstrap: str, env: dict[str, str],
                 logs: Path | None = None) -> None:  # fmt: skip
        super().__init__()
        self.env = env | {
            "ECOM_TOPIC_PREFIX": topology.prefix,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        }
        debug = os.environ.get("ECOM_TEST_WORKER_LOGS")  # a folder, to debug a flow test
        self.logs = Path(debug) if debug else logs
        self.log_files: list[Path] = []  # this run's, oldest first
        self.killed = 0
        self.metrics_ports: dict[str, int] = {}  # worker name -> its /metrics port

    def start_worker(self, name: str) -> None:
        service = name.split("-")[0]
        log = self.logs / f"{name}-{time.time_ns()}.log" if self.logs else None
        if log:
            self.log_files.append(log)
        port = self.metrics_ports.get(name, 0)
        args = ("worker", service, "--metrics-port", str(port), *(["-v"] if log else []))
        self.start(Spec(name, args, self.env, log, cwd=REPO))

    def restart(self, name: str) -> None:
        """SIGKILL a worker at this instant, as a crash would, and start it again."""
        self.kill(name)
        self.killed += 1
        self.start_worker(name)

    def died(self) -> dict[str, int]:
        """Workers that exited without the test stopping them: name -> exit code."""
        return {
            name: code
            for name, child in self.running.items()
            if (code := child.process.poll()) is not None
        }

    def tails(self, service: str, lines: int = 40) -> str:
        """The last lines of each log a worker of `service` wrote (to explain a failure)."""
        found = [log for log in self.log_files if log.name.startswith(service)]
        if not found:
            return "(no worker logs kept)"
        return "\n".join(f"--- {log.name}\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-lines:]) for log in found)  # fmt: skip


@contextmanager
def running_workers(topology: Topology, bootstrap: str, *, logs: str | None = None, **env: str
                    ) -> Iterator[Workers]:  # fmt: skip
    """Run the four workers (their output in the folder logs, if given; env: variables
    for them); fail if one exits by itself (no worker restarts itself)."""
    with Workers(topology, bootstrap, env, Path(logs) if logs else None) as workers:
        for service in SERVICES:
            workers.start_worker(service)
        try:
            yield workers
        except BaseException:
            if workers.log_files:  # pytest shows this beside the failure
                print("\n".join(workers.tails(service) for service in SERVICES))
            raise
        died = workers.died()
        print(f"workers killed by the test: {workers.killed}; exited by themselves: {died}")
        tails = "\n".join(workers.tails(name.split("-")[0]) for name in died)
        assert not died, f"workers exited by themselves (code): {died}\n{tails}"


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
        try:
            event = self._codec.decode(message.value())
        except DecodeError:
            return  # a poison record a test put there: the workers dead-letter it

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


def check_invariants(follower: Follower, orders: list[OrderCreated]) -> dict[str, int]:
    """Check the flow's promises over the whole log; return counts by outcome."""
    return eventually(lambda: _invariants(follower.log, orders))


def _invariants(log: Log, orders: list[OrderCreated]) -> dict[str, int]:
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
    for event in log.by_topic["orders"]:
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


def _story(log: Log, order_id: str) -> str:
    """An order's stream, for a failure message."""
    return " ".join(
        type(e).__name__ for e in log.by_topic["orders"] if getattr(e, "order_id", None) == order_id
    )


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


def eventually(check: Callable[[], T], timeout: float = 60) -> T:
    """Run a check until it passes: what follows an order's end (its stock committed or
    released, a refund) lands a little after the final event. The last failure is
    raised once the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def check_payments(follower: Follower, orders: list[OrderCreated], ledger: Path) -> dict[str, int]:
    """The gateway's ledger agrees with the events: exactly one successful charge per
    confirmed order, for its total; every authorized charge of an order that did not end
    confirmed refunded, once. Return counts for the test to print."""
    return eventually(lambda: _payments(follower.log, orders, ledger))


def _ledger(path: Path) -> tuple[list[Any], list[Any]]:
    """The gateway's charges and refunds; none while no payment worker has opened it (a
    connection here would create the file without its tables)."""
    if not path.exists():
        return [], []
    with closing(sqlite3.connect(path)) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'refunds'").fetchone():
            return [], []
        charges = db.execute("SELECT order_id, amount_minor, authorized FROM charges").fetchall()
        refunds = db.execute("SELECT order_id, amount_minor FROM refunds").fetchall()
    return charges, refunds


def _payments(log: Log, orders: list[OrderCreated], ledger: Path) -> dict[str, int]:
    finals = {e.order_id: e for e in log.by_topic["orders"] if isinstance(e, FINAL_EVENTS)}
    wanted = {o.order_id for o in orders}
    charges, refunds = _ledger(ledger)
    by_order = defaultdict(list)
    for order_id, amount, authorized in charges:
        if order_id in wanted:
            by_order[order_id].append((amount, bool(authorized)))
    assert all(len(c) == 1 for c in by_order.values()), "one charge per order, however retried"
    refunded = defaultdict(list)
    for order_id, amount in refunds:
        refunded[order_id].append(amount)
    for order_id in wanted:
        final = finals[order_id]
        authorized = [amount for amount, ok in by_order.get(order_id, []) if ok]
        if isinstance(final, OrderConfirmed):
            assert authorized == [final.total.amount_minor], f"{order_id}: charged {authorized}"
            assert order_id not in refunded, f"{order_id}: confirmed and refunded"
        else:
            assert refunded.get(order_id, []) == authorized, (
                f"{order_id}: charged {authorized}, refunded {refunded.get(order_id)}; "
                f"{_story(log, order_id)}"
            )
    events = {e.order_id for e in log.by_topic["orders"] if isinstance(e, PaymentRefunded)}
    assert events & wanted == set(refunded) & wanted, "refund events and ledger agree"
    charged = sum(1 for c in by_order.values() for _, ok in c if ok)
    return {"charged": charged, "refunded": len(set(refunded) & wanted)}
