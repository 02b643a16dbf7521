"""`ecom bench produce`: our producer beside Kafka's ProducerPerformance.

Both write the same number of records, of the same mean size, with acks=all and the
same batching settings, to topics made from the same topics.yaml spec, on the same
cluster. Events are generated before the clock starts; our figure covers what every
publisher pays: Avro encoding, headers, keying, producing, and waiting for every ack.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.base import CpuMeter, Rate, children_cpu_seconds, local_brokers, producer_performance
from ecom.kafka import PRODUCER_DEFAULTS, scratch_topology
from ecom.topology import Topology
from producers.producer import EventProducer
from producers.simulate import Shop, ShopPlan
from schemas import Codec, Event, headers

Report = Callable[[str], None]
KEY_SIZE = 16  # our entity ids are about this long


@dataclass(frozen=True)
class ProduceResult:
    """What one benchmark run measured."""

    ours: Rate
    kafka: Rate
    record_size: int

    @property
    def ratio(self) -> float:
        return self.ours.per_second / self.kafka.per_second if self.kafka.per_second else 0.0


def realistic_events(count: int, seed: int = 7) -> list[Event]:
    """Return `count` events of simulated shop traffic (reference data, then orders)."""
    plan = ShopPlan(users=1000, products=500, orders=count, seed=seed)
    return list(itertools.islice(Shop(plan).events(), count))


def record_size(events: list[Event], codec: Codec) -> int:
    """Return the mean size of key + value + headers, as our producer sends them."""
    picked = events[:: max(1, len(events) // 2000)]
    total = 0
    for event in picked:
        head = sum(len(k) + len(v or b"") for k, v in headers(event, "/ecomstream/bench"))
        total += len(codec.encode(event)) + KEY_SIZE + head
    return round(total / len(picked))


def run(
    topology: Topology, bootstrap: str, count: int, report: Report, **overrides: Any
) -> ProduceResult:
    """Measure our producer, then ProducerPerformance, on scratch copies of the topics."""
    report(f"generating {count:,} events ...")
    events = realistic_events(count)
    size = record_size(events, Codec())
    settings = PRODUCER_DEFAULTS | overrides
    with scratch_topology(topology, bootstrap, "bench") as scratch:
        linger, compression = settings["linger.ms"], settings["compression.type"]
        report(f"our producer: {count:,} events, mean record {size} B, "
               f"linger.ms={linger} compression={compression}")  # fmt: skip
        meter = CpuMeter()
        ours = _ours(scratch, bootstrap, events, size, overrides, meter)
        report(f"  {ours.per_second:,.0f} events/s ({ours.mb_per_second:.1f} MB/s)")
        report(f"  {meter.line(ours.seconds)}")
        report("Kafka ProducerPerformance, same count, size and settings ...")
        meter.start(local_brokers())
        before, started = children_cpu_seconds(), time.perf_counter()
        kafka = producer_performance(
            bootstrap, scratch.topic("orders").name, count, size, java_props(settings)
        )
        took = time.perf_counter() - started
        meter.stop()
        meter.spent["ProducerPerformance"] = children_cpu_seconds() - before
        report(f"  {kafka.per_second:,.0f} records/s ({kafka.mb_per_second:.1f} MB/s)")
        report(f"  {meter.line(took)} (the tool's JVM start included)")
    result = ProduceResult(ours, kafka, size)
    report(f"ratio ours / ProducerPerformance: {result.ratio:.2f}")
    return result


def _ours(
    topology: Topology,
    bootstrap: str,
    events: list[Event],
    size: int,
    overrides: dict[str, Any],
    meter: CpuMeter,
) -> Rate:
    producer = EventProducer(topology, bootstrap, "/ecomstream/bench", **overrides)
    producer.check_topics({e.event_type for e in events})
    # Warm up fresh topics (leaders, connections, broker JIT) before the clock starts;
    # ProducerPerformance runs second, on the same warm cluster.
    for event in events[: min(20_000, len(events) // 5)]:
        producer.publish(event)
    producer.flush()
    already = producer.acknowledged
    meter.start(local_brokers() | {"ours": os.getpid()})
    started = time.perf_counter()
    for event in events:
        producer.publish(event)
    producer.flush()
    took = time.perf_counter() - started
    meter.stop()
    assert producer.acknowledged - already == len(events), "every event must be acknowledged"
    return Rate(len(events), took, len(events) * size)


def java_props(settings: dict[str, Any]) -> dict[str, str]:
    """Translate our librdkafka settings into the Java producer's names."""
    return {
        "acks": "all",
        "enable.idempotence": "true",
        "linger.ms": str(settings["linger.ms"]),
        "compression.type": str(settings["compression.type"]),
        "batch.size": str(min(int(settings["batch.size"]), 1_000_000)),
        "buffer.memory": str(256 * 1024 * 1024),
    }
