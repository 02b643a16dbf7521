"""`ecom bench flow`: orders through the running workers, end to end.

It starts the four workers (one process each) on scratch topics, lets a warm-up order
through, then publishes N orders at a given rate and follows the orders topic. Latency
is from handing OrderCreated to the producer until its final event (confirmed,
cancelled or expired) is read back; throughput is orders completed per second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer

from ecom.kafka import client_config
from ecom.topics_admin import scratch_topology
from ecom.topology import Topology
from producers.producer import LOW_LATENCY, EventProducer
from producers.simulate import Shop, ShopPlan
from schemas import Codec, OrderCancelled, OrderConfirmed, OrderCreated, OrderExpired
from streams.worker import SERVICES

Report = Callable[[str], None]
FINAL = (OrderConfirmed, OrderCancelled, OrderExpired)


class Finals:
    """Follows the orders topic and notes when each order's final event arrives."""

    def __init__(self, topology: Topology, bootstrap: str) -> None:
        self.arrived: dict[str, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            client_config(
                bootstrap,
                **{
                    "group.id": f"{topology.prefix}bench-finals",
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 10,
                },
            )
        )
        self._consumer.subscribe([topology.topic("orders").name])
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        codec = Codec()
        while not self._stop.is_set():
            for message in self._consumer.consume(500, timeout=0.05):
                if message.error() is None and codec.event_type(message.value()) in (
                    "OrderConfirmed",
                    "OrderCancelled",
                    "OrderExpired",
                ):
                    event = codec.decode(message.value())
                    self.arrived.setdefault(event.order_id, (time.monotonic(), event.event_type))  # type: ignore[attr-defined]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


@contextmanager
def _workers(topology: Topology, bootstrap: str) -> Iterator[None]:
    env = os.environ | {
        "ECOM_TOPIC_PREFIX": topology.prefix,
        "ECOM_GATEWAY_LATENCY_MS": "2",
        "ECOM_GATEWAY_DECLINE_SHARE": "0.05",
    }
    command = [sys.executable, "-m", "ecom", "worker"]
    logs = os.environ.get("ECOM_BENCH_WORKER_LOGS")  # a folder, to look into a slow run
    children = [
        subprocess.Popen(
            [*command, s, "--bootstrap", bootstrap, *(["-v"] if logs else [])],
            env=env,
            stdout=(Path(logs) / f"{s}.log").open("w") if logs else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for s in SERVICES
    ]
    try:
        yield
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(60)


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
