"""`ecom bench flow`: orders through the running workers, end to end.

It starts the four workers (one process each) on scratch topics, lets a warm-up order
through, then publishes N orders of a realistic shop (10% cancelled by the customer,
20% of payments declined, every 10th product scarce, the gateway's default latency) at
an offered rate, and follows the orders topic. Latency runs from handing OrderCreated
to the producer until its final event (confirmed, cancelled or expired) is read back;
throughput is orders completed per second, beside the rate offered. The CPU seconds of
every process (brokers, each worker, this driver) over the measured window say where
the time went.

Then Kafka alone, for scale: ProducerPerformance sends as many records as the flow wrote
in its window (events, state, dead letters), at the flow's rate of records per second,
with the workers' producer settings, and the brokers' CPU seconds are counted again. The
flow costs the brokers more (its records are also fetched by five consumers), never less.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.base import CpuMeter, local_brokers, percentile, producer_performance, wait_until
from bench.produce import java_props, record_size
from ecom.errors import DecodeError, InvalidEvent, ProcessFailed
from ecom.kafka import (
    LOW_LATENCY,
    PRODUCER_DEFAULTS,
    Message,
    TopicReader,
    log_ends,
    scratch_topology,
)
from ecom.process import Children, Spec
from ecom.progress import progress
from ecom.topology import FLOW_SERVICES, Topology
from producers.producer import EventProducer
from producers.simulate import Shop, ShopPlan
from schemas import Codec, Event, OrderCancelled, OrderCreated
from schemas.rules.order import FINAL_EVENT_TYPES
from streams.flow import OUTPUTS

Report = Callable[[str], None]


@dataclass(frozen=True)
class FlowResult:
    """What one run measured."""

    orders: int
    offered_per_s: float
    achieved_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    outcomes: dict[str, int]
    steps_p50_ms: dict[str, float]  # event type -> p50 from sending OrderCreated to it
    cpu_s: dict[str, float]
    wall_s: float
    records: int = 0  # written to every topic in the window
    records_by_topic: dict[str, int] = field(default_factory=dict)  # topics.yaml names
    alone_broker_cpu_s: float = 0.0  # the brokers', ProducerPerformance sending as many
    alone_wall_s: float = 0.0


class Finals:
    """Follows the orders topic and notes when each order's final event arrives, and
    when the first event of each type of its story did (where an order's time goes)."""

    def __init__(self, topology: Topology, bootstrap: str) -> None:
        self.arrived: dict[str, tuple[float, str]] = {}
        self.steps: dict[str, dict[str, float]] = {}  # order id -> event type -> arrival
        self._codec = Codec()
        orders = [topology.topic("orders").name]
        self._reader = TopicReader(bootstrap, orders, self._note, name="finals").start()

    def _note(self, message: Message) -> None:
        now = time.monotonic()
        try:
            event = self._codec.decode(message.value())
        except (DecodeError, InvalidEvent):
            return  # not an event of ours: nobody's order
        order_id = getattr(event, "order_id", None)
        if order_id is None:
            return
        self.steps.setdefault(order_id, {}).setdefault(event.event_type, now)
        if event.event_type in FINAL_EVENT_TYPES:
            outcome = event.event_type
            if isinstance(event, OrderCancelled):
                outcome = f"cancelled ({event.reason})"
            self.arrived.setdefault(order_id, (now, outcome))

    def close(self) -> None:
        self._reader.stop()


@dataclass
class RunningFlow:
    """The four workers on scratch topics, past a first order; a producer to offer more
    and the finals of every order."""

    children: Children
    specs: dict[str, Spec]  # by service
    finals: Finals
    producer: EventProducer

    @property
    def pids(self) -> dict[str, int]:
        return {name: self.children.running[spec.name].pid for name, spec in self.specs.items()}


@contextmanager
def running_flow(scratch: Topology, bootstrap: str, env: dict[str, str], source: str,
                 reference: list[Event], warm_up: OrderCreated, logs: Path | None = None,
                 verbose: bool = False) -> Iterator[RunningFlow]:  # fmt: skip
    """Start the four workers (one process each), publish the reference data and a first
    order, and yield once that order reached its final state."""
    env = {**env, "ECOM_TOPIC_PREFIX": scratch.prefix}
    with Children() as children, ExitStack() as later:
        specs = {}
        for name in FLOW_SERVICES:
            args = ("worker", name, "--bootstrap", bootstrap, "--metrics-port", "0",
                    *(["-v"] if verbose else []))  # fmt: skip
            log = logs / f"worker-{name}.log" if logs else None
            specs[name] = children.start(Spec(f"worker-{name}", args, env, log)).spec
        finals = Finals(scratch, bootstrap)
        later.callback(finals.close)
        producer = EventProducer(scratch, bootstrap, source, **LOW_LATENCY)
        later.callback(producer.close)  # closed first: its last sends may still be read
        for event in [*reference, warm_up]:
            producer.publish(event)
        producer.flush()

        def started() -> bool:
            running = all(still_running(children, spec) for spec in specs.values())
            return running and warm_up.order_id in finals.arrived

        wait_until(started, 180, "the workers to take a first order")
        yield RunningFlow(children, specs, finals, producer)


def still_running(children: Children, spec: Spec) -> bool:
    """True while a child runs; a child that died says so, naming its log."""
    if not children.alive(spec.name):
        raise ProcessFailed(f"{spec.name} exited; see {spec.log or 'its output'}")
    return True


def run(topology: Topology, bootstrap: str, orders: int, rate: float, report: Report,
        as_json: bool = False) -> FlowResult:  # fmt: skip
    """Drive `orders` orders at `rate` per second (0: as fast as possible) and report."""
    plan = ShopPlan(users=2000, products=200, orders=orders + 1, seed=99, cancel_share=0.1,
                    min_stock=30, max_stock=100_000, scarce_every=10)  # fmt: skip
    shop = Shop(plan)
    reference = list(shop.reference_events())  # made first: orders come after the prices
    traffic = list(shop.order_events())
    warm_up = traffic[0]
    assert isinstance(warm_up, OrderCreated)
    measured = traffic[1:]
    logs = os.environ.get("ECOM_BENCH_WORKER_LOGS")  # a folder, to look into a slow run
    with (
        tempfile.TemporaryDirectory() as ledger,
        scratch_topology(topology, bootstrap, "fbench") as scratch,
    ):
        flow_run = running_flow(
            scratch,
            bootstrap,
            {
                "ECOM_GATEWAY_DECLINE_SHARE": "0.2",
                # Long enough that a backlog measures capacity instead of expiring orders.
                "ECOM_PAYMENT_TIMEOUT_S": "600",
                "ECOM_GATEWAY_LEDGER": str(Path(ledger) / "ledger.db"),
            },
            "/ecomstream/bench",
            reference,
            warm_up,
            Path(logs) if logs else None,
            verbose=bool(logs),
        )  # fmt: skip
        with flow_run as flow:
            offered = "full speed" if not rate else f"{rate:g}/s"
            report(f"workers ready; {orders:,} orders offered at {offered}")
            meter = CpuMeter()
            meter.start(local_brokers() | flow.pids | {"driver": os.getpid()})
            before = _records(scratch, bootstrap)
            started = time.monotonic()
            sent, send_s = _drive(flow.producer, measured, rate)
            created = [e for e in measured if isinstance(e, OrderCreated)]
            _wait_for_finals(flow.finals, created, 120 + orders / 10)
            wall = time.monotonic() - started
            meter.stop()
            written = _records(scratch, bootstrap) - before
            arrived = dict(flow.finals.arrived)
            story = flow.finals.steps
        size = record_size(measured, Codec())
        records = written.total()
        alone_cpu, alone_wall = _kafka_alone(scratch, bootstrap, records, wall, size, report)
    steps = _steps(created, sent, story)  # the reader has stopped: story is still
    result = _result(created, sent, send_s, arrived, steps, meter, wall)
    by_topic = {name: count for name, count in written.most_common() if count}
    result = replace(result, records=records, records_by_topic=by_topic,
                     alone_broker_cpu_s=round(alone_cpu, 2),
                     alone_wall_s=round(alone_wall, 2))  # fmt: skip
    _report(result, meter, report, as_json)
    return result


def _records(scratch: Topology, bootstrap: str) -> Counter[str]:
    """Every record written to the run's topics so far, by topics.yaml name."""
    names = {topic.name: topic.spec.name for topic in scratch.topics()}
    ends = log_ends(bootstrap, list(names))
    counts: Counter[str] = Counter()
    for (topic, _), end in ends.items():
        counts[names[topic]] += end
    return counts


def _kafka_alone(scratch: Topology, bootstrap: str, records: int, over_s: float, size: int,
                 report: Report) -> tuple[float, float]:  # fmt: skip
    """Return the brokers' CPU seconds, and the wall time, while ProducerPerformance sends
    `records` over `over_s` seconds to a topic of the run, with the workers' settings."""
    per_second = max(1.0, records / over_s)  # ProducerPerformance waits forever at 0
    report(f"Kafka alone: ProducerPerformance, {records:,} records at {per_second:,.0f}/s ...")
    meter = CpuMeter()
    meter.start(local_brokers())
    started = time.monotonic()
    props = java_props(PRODUCER_DEFAULTS | OUTPUTS)
    topic = scratch.topic("order-flow-dlq").name  # nobody reads it any more
    producer_performance(bootstrap, topic, max(1, records), size, props, per_second)
    wall = time.monotonic() - started
    return sum(meter.stop().values()), wall


def _wait_for_finals(finals: Finals, created: list[OrderCreated], timeout: float) -> None:
    """Wait until every order reached a final state (a bar on a terminal)."""
    with progress("orders in a final state", len(created)) as advance:
        shown = 0

        def all_final() -> bool:
            nonlocal shown
            done = sum(1 for o in created if o.order_id in finals.arrived)
            advance(done - shown)
            shown = done
            return done == len(created)

        wait_until(all_final, timeout, "every order to reach a final state")


def _drive(
    producer: EventProducer, events: list[Any], rate: float
) -> tuple[dict[str, float], float]:
    """Publish the shop's order events, orders paced at `rate`; return send times."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for event in events:
        if isinstance(event, OrderCreated):
            if rate and (wait := start + len(sent) / rate - time.monotonic()) > 0:
                time.sleep(wait)
            sent[event.order_id] = time.monotonic()
        producer.publish(event)
        producer.poll(0)
    producer.flush()
    return sent, time.monotonic() - start


def _result(orders: list[OrderCreated], sent: dict[str, float], send_s: float,
            arrived: dict[str, tuple[float, str]], steps: dict[str, float],
            meter: CpuMeter, wall: float) -> FlowResult:  # fmt: skip
    latencies = sorted((arrived[o.order_id][0] - sent[o.order_id]) * 1000 for o in orders)
    took = max(arrived[o.order_id][0] for o in orders) - min(sent.values())
    outcomes = Counter(arrived[o.order_id][1] for o in orders)
    return FlowResult(
        orders=len(orders),
        offered_per_s=round(len(orders) / send_s, 1) if send_s else 0.0,
        achieved_per_s=round(len(orders) / took, 1),
        p50_ms=round(percentile(latencies, 0.50), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        max_ms=round(latencies[-1], 1),
        outcomes=dict(outcomes.most_common()),
        steps_p50_ms=steps,
        cpu_s={k: round(v, 2) for k, v in meter.spent.items()},
        wall_s=round(wall, 2),
    )


def _steps(orders: list[OrderCreated], sent: dict[str, float],
           steps: dict[str, dict[str, float]]) -> dict[str, float]:  # fmt: skip
    """Return, per event type of the orders topic, the p50 time from sending an order's
    OrderCreated to reading that type's first event of the order, sorted by that time
    (each over the orders that had such an event)."""
    taken: dict[str, list[float]] = {}
    for order in orders:
        for event_type, at in steps.get(order.order_id, {}).items():
            taken.setdefault(event_type, []).append((at - sent[order.order_id]) * 1000)
    p50 = {kind: round(percentile(sorted(ms), 0.50), 1) for kind, ms in taken.items()}
    return dict(sorted(p50.items(), key=lambda item: item[1]))


def _report(result: FlowResult, meter: CpuMeter, report: Report, as_json: bool) -> None:
    if as_json:
        report(json.dumps(asdict(result)))
        return
    outcomes = ", ".join(f"{k} {v}" for k, v in result.outcomes.items())
    report(f"{result.orders:,} orders: offered {result.offered_per_s:,.0f}/s, completed "
           f"{result.achieved_per_s:,.0f}/s ({outcomes})")  # fmt: skip
    report(f"latency OrderCreated -> final: p50 {result.p50_ms:.0f} ms, "
           f"p99 {result.p99_ms:.0f} ms, max {result.max_ms:.0f} ms")  # fmt: skip
    steps = ", ".join(f"{kind} {ms:.0f}" for kind, ms in result.steps_p50_ms.items())
    report(f"where an order's time went (p50 ms after sending it, first of each event): {steps}")
    report(meter.line(result.wall_s))
    brokers = sum(v for k, v in result.cpu_s.items() if k.startswith("broker"))
    report(f"the flow wrote {result.records:,} records ({result.records / result.orders:.1f} "
           f"per order); Kafka alone, ProducerPerformance sending as many at the same rate "
           f"(acks=all, linger.ms {OUTPUTS['linger.ms']}): brokers "
           f"{result.alone_broker_cpu_s:.1f} CPU seconds over {result.alone_wall_s:.1f}s "
           f"(under the flow: {brokers:.1f})")  # fmt: skip
    mix = ", ".join(f"{name} {count / result.orders:.1f}"
                    for name, count in result.records_by_topic.items())  # fmt: skip
    report(f"records per order by topic: {mix}")
