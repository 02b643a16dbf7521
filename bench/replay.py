"""`ecom bench replay`: rebuild the inventory view from N events, start to switch.

Scratch topics get N inventory events (stock arriving for 20,000 products, written
as pre-encoded records so that publishing is not what this measures). Then `Replay`
rebuilds the inventory projection into a scratch SQLite view, and the wall time runs
from the start of the replay until its switch. Kafka's ConsumerPerformance then reads
the same topic and count: the ratio is ours / Kafka's records per second.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.base import consumer_performance
from consumers.projections import PROJECTIONS
from consumers.replay import Replay
from consumers.store import open_store
from ecom.kafka import BytesProducer, scratch_topology
from ecom.topology import Topology
from schemas import Codec, StockAdjusted, headers

Report = Callable[[str], None]
PRODUCTS = 20_000
DISTINCT = 50_000  # distinct records, published again and again up to N


def run(topology: Topology, bootstrap: str, events: int, report: Report) -> None:
    projection = PROJECTIONS["inventory"]
    with (
        scratch_topology(topology, bootstrap, "rbench") as scratch,
        tempfile.TemporaryDirectory() as tmp,
    ):
        topic = scratch.topic("inventory").name
        report(f"publishing {events:,} inventory events to {topic} ...")
        _publish(bootstrap, topic, events)
        with open_store(f"sqlite:///{Path(tmp) / 'view.db'}") as store:
            started = time.perf_counter()
            outcome = Replay(projection, store, scratch, bootstrap, lambda _: None).run()
            wall = time.perf_counter() - started
        ours = outcome.events / wall
        kafka = consumer_performance(bootstrap, topic, events, f"{topic}-perf-{time.time_ns()}")
        report(
            f"replay of inventory: {outcome.events:,} events, start to switch {wall:.1f}s "
            f"= {ours:,.0f} events/s; ConsumerPerformance on the same topic: "
            f"{kafka.per_second:,.0f} records/s; ratio {ours / kafka.per_second:.3f}"
        )


def _publish(bootstrap: str, topic: str, events: int) -> None:
    codec = Codec()
    records = []
    for i in range(min(events, DISTINCT)):
        event = StockAdjusted(product_id=f"p-{i % PRODUCTS:05d}", quantity=1 + i % 7,
                              reason="delivery")  # fmt: skip
        key = event.product_id.encode()
        records.append((key, codec.encode(event), headers(event, "/ecomstream/bench")))
    with BytesProducer(bootstrap) as producer:
        for n in range(events):
            key, value, header = records[n % len(records)]
            producer.produce(topic, value, key, header)
