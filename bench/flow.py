"""`ecom bench flow`: orders through the running workers, end to end.

It starts the four workers (one process each) on scratch topics, lets a warm-up order
through, then publishes N orders at a given rate and follows the orders topic. Latency
is from handing OrderCreated to the producer until its final event (confirmed,
cancelled or expired) is read back; throughput is orders completed per second.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ecom.kafka import LOW_LATENCY, Message, TopicReader, scratch_topology
from ecom.process import Children, Spec
from ecom.topology import FLOW_SERVICES, Topology
from producers.producer import EventProducer
from producers.simulate import Shop, ShopPlan
from schemas import Codec, OrderCreated
from schemas.rules.order import FINAL_EVENT_TYPES

Report = Callable[[str], None]


class Finals:
    """Follows the orders topic and notes when each order's final event arrives."""

    def __init__(self, topology: Topology, bootstrap: str) -> None:
        self.arrived: dict[str, tuple[float, str]] = {}
        self._codec = Codec()
        orders = [topology.topic("orders").name]
        self._reader = TopicReader(bootstrap, orders, self._note, name="finals").start()

    def _note(self, message: Message) -> None:
        if self._codec.event_type(message.value()) in FINAL_EVENT_TYPES:
            event = self._codec.decode(message.value())
            self.arrived.setdefault(event.order_id, (time.monotonic(), event.event_type))  # type: ignore[attr-defined]

    def close(self) -> None:
        self._reader.stop()


@contextmanager
def _workers(topology: Topology, bootstrap: str) -> Iterator[None]:
    env = {
        "ECOM_TOPIC_PREFIX": topology.prefix,
        "ECOM_GATEWAY_LATENCY_MS": "2",
        "ECOM_GATEWAY_DECLINE_SHARE": "0.05",
    }
    logs = os.environ.get("ECOM_BENCH_WORKER_LOGS")  # a folder, to look into a slow run
    with Children() as children:
        for service in FLOW_SERVICES:
            args = ("worker", service, "--bootstrap", bootstrap, *(["-v"] if logs else []))
            log = Path(logs) / f"{service}.log" if logs else None
            children.start(Spec(service, args, env, log))
        yield


def run(topology: Topology, bootstrap: str, orders: int, rate: float, report: Report) -> None:
    """Drive `orders` orders at `rate` per second (0: as fast as possible) and report."""
    plan = ShopPlan(
        users=2000,
        products=200,
        orders=orders + 1,
        seed=99,
        cancel_share=0.0,
        min_stock=100_000,
        max_stock=100_000,
    )
    shop = Shop(plan)
    traffic = [e for e in shop.order_events() if isinstance(e, OrderCreated)]
    warm_up, measured = traffic[0], traffic[1:]
    with scratch_topology(topology, bootstrap, "fbench") as scratch, _workers(scratch, bootstrap):
        finals = Finals(scratch, bootstrap)
        producer = EventProducer(scratch, bootstrap, "/ecomstream/bench", **LOW_LATENCY)
        try:
            for event in shop.reference_events():
                producer.publish(event)
            producer.publish(warm_up)
            producer.flush()
            _wait(lambda: warm_up.order_id in finals.arrived, 180, "the workers to start")
            report(
                f"workers ready; {orders:,} orders at {'full speed' if not rate else f'{rate:g}/s'}"
            )
            sent = _drive(producer, measured, rate)
            _wait(
                lambda: all(o.order_id in finals.arrived for o in measured),
                60 + orders / 20,
                "every order to reach a final state",
            )
        finally:
            producer.close()
            finals.close()
    _report(measured, sent, finals.arrived, report)


def _drive(producer: EventProducer, orders: list[OrderCreated], rate: float) -> dict[str, float]:
    sent: dict[str, float] = {}
    start = time.monotonic()
    for number, order in enumerate(orders):
        if rate and (wait := start + number / rate - time.monotonic()) > 0:
            time.sleep(wait)
        sent[order.order_id] = time.monotonic()
        producer.publish(order)
        producer.poll(0)
    producer.flush()
    return sent


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _report(
    orders: list[OrderCreated],
    sent: dict[str, float],
    arrived: dict[str, tuple[float, str]],
    report: Report,
) -> None:
    latencies = sorted((arrived[o.order_id][0] - sent[o.order_id]) * 1000 for o in orders)
    took = max(arrived[o.order_id][0] for o in orders) - min(sent.values())
    outcomes = Counter(arrived[o.order_id][1] for o in orders)
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    report(
        f"{len(orders):,} orders in {took:.1f}s = {len(orders) / took:,.0f} orders/s completed "
        f"({', '.join(f'{k} {v}' for k, v in outcomes.most_common())})"
    )
    worst = latencies[-1]
    report(f"latency OrderCreated -> final: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms")
