"""`ecom bench replay`: rebuild every view from N events of the shop's mix, start to switch.

Scratch topics get N events of simulated shop traffic (users, products, prices, stock
arriving, orders with the stock requests and settlements they cause, payments), about
one order per five events, so a million events hold over 200,000 distinct keys: more
than any cache. Publishing is timed and printed, not counted. Then `Replay` rebuilds
each projection into one fresh SQLite (or --store) view, one after the other: the
figure is every record the replays read over the sum of their start-to-switch times;
the checksums after each switch are timed apart. A replay that reads 50,000 records or
more folds in --processes processes (the scratch topics never gained partitions) and
says so. Kafka's ConsumerPerformance then reads every topic the replays read, in one
consumer (the replays read products twice: rates are compared, records per second),
and the ratio is ours over Kafka's. The goal is 100,000 records/s into SQLite and 50,000
into PostgreSQL. The last lines say where the replays' time went (decode, fold,
database, and the rest: fetching from Kafka and the loop), in process-seconds, and the
CPU seconds the brokers, this process and the replay processes used meanwhile.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.base import CpuMeter, children_cpu_seconds, consumer_performance, local_brokers
from consumers.projections import PROJECTIONS
from consumers.replay import Outcome, Replay
from consumers.store import open_store
from ecom.errors import BadInput
from ecom.kafka import BytesProducer, log_ends, scratch_topology
from ecom.progress import progress
from ecom.settings import redact
from ecom.topology import Topology
from producers.simulate import Shop, ShopPlan, with_stock_flow
from schemas import Codec, headers

Report = Callable[[str], None]
EVENTS_PER_ORDER = 5  # roughly, in the shop's mix with its stock flow
GOALS = {"sqlite": 100_000, "postgresql": 50_000}  # records/s, start to switch


def run(topology: Topology, bootstrap: str, events: int, report: Report,
        store_url: str | None = None, processes: int = 1) -> None:  # fmt: skip
    if store_url is not None:
        _check_empty(store_url)  # before minutes of publishing
    with (
        scratch_topology(topology, bootstrap, "rbench") as scratch,
        tempfile.TemporaryDirectory() as tmp,
    ):
        keys = _publish(scratch, bootstrap, events, report)
        url = store_url or f"sqlite:///{Path(tmp) / 'v.db'}"
        meter, before, started = CpuMeter(), children_cpu_seconds(), time.perf_counter()
        meter.start(local_brokers() | {"ours": os.getpid()})
        outcomes = _replay_all(scratch, bootstrap, url, processes)
        meter.stop()
        meter.spent["replay processes"] = children_cpu_seconds() - before
        wall = time.perf_counter() - started
        _report(scratch, bootstrap, outcomes, keys, _goal(url), report)
        report(f"{meter.line(wall)} (every replay, its start and checksum included)")


def _publish(scratch: Topology, bootstrap: str, events: int, report: Report) -> int:
    """Publish the shop's first N events (encoded as the CLI producer would); return how
    many distinct keys they hold."""
    orders = max(1, events // EVENTS_PER_ORDER)
    products = max(10, min(2000, events // 500))  # a small run holds orders too
    plan = ShopPlan(users=max(1, orders // 4), products=products, orders=orders, seed=7)
    started = time.perf_counter()
    codec, keys, published = Codec(), set(), 0
    with BytesProducer(bootstrap) as producer, progress("publishing", events) as advance:
        for event in with_stock_flow(Shop(plan).events()):
            topic = scratch.for_event(event.event_type)
            key = str(getattr(event, topic.key_field(event.event_type)))
            producer.produce(topic.name, codec.encode(event), key.encode(),
                             headers(event, "/ecomstream/bench"))  # fmt: skip
            keys.add(f"{topic.name}/{key}")
            published += 1
            advance(1)
            if published >= events:
                break
    seconds = time.perf_counter() - started
    report(f"published {published:,} events ({len(keys):,} distinct keys) in {seconds:.1f}s "
           "(not counted)")  # fmt: skip
    return len(keys)


def _check_empty(store_url: str) -> None:
    """Refuse a database with views: a replay could never catch up with one of them."""
    with open_store(store_url) as store:
        for name in PROJECTIONS:
            if store.generations(name):
                raise BadInput(f"bench replay needs an empty view database; {redact(store_url)}"
                               f" holds a {name} view")  # fmt: skip


def _replay_all(scratch: Topology, bootstrap: str, store_url: str, processes: int
                ) -> dict[str, Outcome]:  # fmt: skip
    outcomes = {}
    with open_store(store_url) as store:
        for name, projection in PROJECTIONS.items():
            replay = Replay(projection, store, scratch, bootstrap, lambda _: None, processes)
            outcomes[name] = replay.run()
    return outcomes


def _goal(store_url: str) -> int:
    return GOALS["postgresql" if store_url.startswith("postgres") else "sqlite"]


def _report(scratch: Topology, bootstrap: str, outcomes: dict[str, Outcome], keys: int,
            goal: int, report: Report) -> None:  # fmt: skip
    for name, o in outcomes.items():
        rate = o.progress.read / o.seconds
        report(f"  {name:<10} {o.progress.read:>9,} records, start to switch {o.seconds:6.1f}s "
               f"= {rate:>8,.0f}/s in {o.processes} process(es); checksum "
               f"{o.checksum_seconds:.1f}s")  # fmt: skip
    read = sum(o.progress.read for o in outcomes.values())
    wall = sum(o.seconds for o in outcomes.values())
    ours = read / wall
    topics = sorted({scratch.topic(t).name for p in PROJECTIONS.values() for t in p.topics})
    count = sum(log_ends(bootstrap, topics).values())
    kafka = consumer_performance(bootstrap, topics, count, f"rbench-perf-{time.time_ns()}")
    reached = "reached" if ours >= goal else "NOT reached"
    report(
        f"replay of every view: {read:,} records ({keys:,} distinct keys), start to switch "
        f"{wall:.1f}s = {ours:,.0f} records/s (goal {goal:,}/s: {reached}); ConsumerPerformance "
        f"reading the same topics in one consumer: {kafka.per_second:,.0f} records/s; ratio "
        f"{ours / kafka.per_second:.3f}"
    )
    decode = sum(o.progress.decode_s for o in outcomes.values())
    fold = sum(o.progress.fold_s for o in outcomes.values())
    store = sum(o.progress.store_s for o in outcomes.values())
    # A parallel replay's phase times are summed over its processes: so is the whole.
    spent = sum(o.process_seconds for o in outcomes.values())
    rest = spent - decode - fold - store
    report(
        f"where the time went ({spent:.1f} process-seconds): "
        + ", ".join(
            f"{label} {seconds:.1f}s ({seconds / spent:.0%}, {seconds / read * 1e6:.1f} us/record)"
            for label, seconds in (
                ("decode", decode), ("fold", fold), ("database", store), ("kafka+loop", rest)
            )
        )
    )  # fmt: skip
