"""`ecom bench produce`: our producer beside Kafka's ProducerPerformance.

Both write the same number of records with acks=all and the same batching settings, to
topics made from the same topics.yaml spec, on the same cluster. ProducerPerformance
sends our own records: a sample of them, key, headers and body laid end to end as its
payloads (7-bit, its payload file is text), with integer keys over as many distinct
keys, so that compression and partitioning meet the same data. Events are generated
before the clock starts; our figure covers what every publisher pays: Avro encoding,
headers, keying, producing, and waiting for every ack.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.base import (
    CpuMeter,
    Payloads,
    Rate,
    children_cpu_seconds,
    local_brokers,
    producer_performance,
)
from ecom.kafka import PRODUCER_DEFAULTS, scratch_topology
from ecom.topology import Topology
from producers.producer import EventProducer
from producers.simulate import Shop, ShopPlan
from schemas import Codec, Event, headers

Report = Callable[[str], None]
KEY_SIZE = 16  # our entity ids are about this long
SOURCE = "/ecomstream/bench"
PAYLOADS = 20_000  # records sampled for ProducerPerformance's payload file
# Its payload file is read as UTF-8 text split at newlines: keep 7 bits, no newline.
_TEXT = bytes(11 if i & 0x7F == 10 else i & 0x7F for i in range(256))


@dataclass(frozen=True)
class ProduceResult:
    """What one benchmark run measured."""

    ours: Rate
    kafka: Rate
    record_size: int
    kafka_record_size: int

    @property
    def ratio(self) -> float:
        return self.ours.per_second / self.kafka.per_second if self.kafka.per_second else 0.0


def realistic_events(count: int, seed: int = 7) -> list[Event]:
    """Return `count` events of simulated shop traffic (reference data, then orders)."""
    plan = ShopPlan(users=1000, products=500, orders=count, seed=seed)
    return list(itertools.islice(Shop(plan).events(), count))


def record_size(events: list[Event], codec: Codec, topology: Topology | None = None) -> int:
    """Return the mean size of key + value + headers, as our producer sends them (keys
    as long as our ids usually are, or each event's own key given its topology)."""
    picked = events[:: max(1, len(events) // 2000)]
    sizes = [len(_wire(e, codec, _key(e, topology) if topology else "k" * KEY_SIZE))
             for e in picked]  # fmt: skip
    return round(sum(sizes) / len(sizes))


def run(
    topology: Topology, bootstrap: str, count: int, report: Report, **overrides: Any
) -> ProduceResult:
    """Measure our producer, then ProducerPerformance, on scratch copies of the topics."""
    report(f"generating {count:,} events ...")
    events = realistic_events(count)
    size = record_size(events, Codec(), topology)
    settings = PRODUCER_DEFAULTS | overrides
    with scratch_topology(topology, bootstrap, "bench") as scratch, \
            tempfile.TemporaryDirectory(prefix="ecom-bench-") as scratch_dir:  # fmt: skip
        payloads, kafka_size = payload_file(events, topology, Path(scratch_dir) / "payloads")
        linger, compression = settings["linger.ms"], settings["compression.type"]
        report(f"our producer: {count:,} events, mean record {size} B, "
               f"linger.ms={linger} compression={compression}")  # fmt: skip
        meter = CpuMeter()
        ours = _ours(scratch, bootstrap, events, size, overrides, meter)
        report(f"  {ours.per_second:,.0f} events/s ({ours.mb_per_second:.1f} MB/s)")
        report(f"  {meter.line(ours.seconds)}")
        report(
            "Kafka ProducerPerformance, same count and settings, our records as payloads "
            f"(mean {kafka_size} B with its integer key), {payloads.keys:,} keys ..."
        )
        meter.start(local_brokers())
        before, started = children_cpu_seconds(), time.perf_counter()
        kafka = producer_performance(
            bootstrap, scratch.topic("orders").name, count, kafka_size, java_props(settings),
            payloads=payloads,
        )  # fmt: skip
        took = time.perf_counter() - started
        meter.stop()
        meter.spent["ProducerPerformance"] = children_cpu_seconds() - before
        report(f"  {kafka.per_second:,.0f} records/s ({kafka.mb_per_second:.1f} MB/s)")
        report(f"  {meter.line(took)} (the tool's JVM start included)")
    result = ProduceResult(ours, kafka, size, kafka_size)
    partitions = topology.topic("orders").spec.partitions
    report(f"ratio ours / ProducerPerformance: {result.ratio:.2f} (both keyed: ours by entity "
           f"id over {_spread(events, topology)}, its integer keys over one topic of "
           f"{partitions} partitions; its payloads hold our keys too)")  # fmt: skip
    return result


def payload_file(events: list[Event], topology: Topology, path: Path) -> tuple[Payloads, int]:
    """Write a sample of our records as ProducerPerformance payloads; return them and the
    mean size of the records it will send (payload and integer key)."""
    codec = Codec()
    keys = len({_key(event, topology) for event in events})
    picked = events[:: max(1, len(events) // PAYLOADS)][:PAYLOADS]
    lines = [_wire(event, codec, _key(event, topology)).translate(_TEXT) for event in picked]
    path.write_bytes(b"\n".join(lines))
    return Payloads(path, keys), round(sum(map(len, lines)) / len(lines) + _digits(keys))


def _spread(events: list[Event], topology: Topology) -> str:
    """How many topics, and partitions in all, the events go to."""
    topics = [topology.for_event(t) for t in {event.event_type for event in events}]
    partitions = {topic.name: topic.spec.partitions for topic in topics}
    return f"{len(partitions)} topics of {sum(partitions.values())} partitions"


def _digits(count: int) -> float:
    """The mean length of the integers 0 .. count-1 written out: the tool's keys."""
    total, low = 0, 0
    while low < count:
        high = min(count, max(10, low * 10))
        total += (high - low) * len(str(low))
        low = high
    return total / count if count else 0.0


def _key(event: Event, topology: Topology) -> str:
    return str(getattr(event, topology.for_event(event.event_type).key_field(event.event_type)))


def _wire(event: Event, codec: Codec, key: str) -> bytes:
    """Key, header names and values, and body: the bytes our producer hands to Kafka."""
    head = b"".join(name.encode() + _bytes(value) for name, value in headers(event, SOURCE))
    return key.encode() + head + codec.encode(event)


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


def _ours(
    topology: Topology,
    bootstrap: str,
    events: list[Event],
    size: int,
    overrides: dict[str, Any],
    meter: CpuMeter,
) -> Rate:
    producer = EventProducer(topology, bootstrap, SOURCE, **overrides)
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
