"""`ecom produce` and `ecom simulate`: put events on Kafka from the command line."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import click

from ecom.cli.context import context
from ecom.cli.output import FiniteRange, bootstrap_option
from ecom.errors import BadInput, KafkaUnavailable
from ecom.kafka import security_for, use_service
from ecom.kafka.security import current_service
from ecom.progress import progress
from ecom.topology import Topology
from producers.input import TYPE_FIELD, build_event, parse_data_option, read_ndjson_lines
from producers.producer import EventProducer, Receipts
from producers.simulate import SIMULATED_ORDER_EVENTS, Shop, ShopPlan
from schemas import Event
from schemas.codec import check_source

# How long librdkafka tries to deliver a record of the CLI, as for the command API: once
# it gave up, a record is never sent later, and the command waits a little longer than
# that (WAIT_S) so that every record has its answer when it reports.
DELIVERY_TIMEOUT_S = 30
CLI_PRODUCER: dict[str, Any] = {"delivery.timeout.ms": DELIVERY_TIMEOUT_S * 1000}
WAIT_S = DELIVERY_TIMEOUT_S + 10


@click.command()
@click.argument("event_type", required=False)
@click.option("--data", help="The event as JSON, or @file.json.")
@click.option(
    "--file", "path", help='NDJSON file, one event per line with its "type" (- for stdin).'
)
@bootstrap_option
@click.option(
    "--source",
    default="/ecomstream/cli",
    show_default=True,
    help="CloudEvents source (ce_source): a URI-reference.",
)
def produce(
    event_type: str | None, data: str | None, path: str | None, bootstrap: str | None, source: str
) -> None:
    """Validate events and publish them: one with --data, or a whole file with --file."""
    check_source(source, "--source")
    use_service("producer")
    if path and (event_type or data):
        raise BadInput("give either EVENT_TYPE --data JSON or --file PATH, not both")
    if path:
        lines = read_ndjson_lines(path)
        events = [event for _, event in lines]
    elif event_type and data:
        events = [build_event(event_type, parse_data_option(data))]
    else:
        raise BadInput("give EVENT_TYPE --data JSON, or --file PATH (see `ecom produce --help`)")
    ctx = context(bootstrap)
    _check_sends(ctx.topology, ctx.bootstrap, {e.event_type for e in events})
    with EventProducer(ctx.topology, ctx.bootstrap, source, **CLI_PRODUCER) as producer:
        producer.check_topics({e.event_type for e in events})
        if len(events) == 1:
            delivery = producer.publish_and_wait(events[0], WAIT_S)
            click.echo(
                f"{events[0].event_type} {delivery.key} -> {delivery.topic} "
                f"partition {delivery.partition} offset {delivery.offset}"
            )
            return
        receipts = Receipts(lambda index: f"line {lines[index][0]}")
        _publish_all(producer, events, len(events), receipts)


def _check_sends(topology: Topology, bootstrap: str, event_types: set[str]) -> None:
    """Refuse events the principal's services do not send (topics.yaml `sends`): the
    ACLs are per topic, and the CLI's own principal may write the orders topic, where
    the workers' decisions go too (an OrderConfirmed from the CLI confirmed an unpaid
    order). It applies to every principal of the CLI's own service (the command API's
    too); with another service's credentials, that service's ACLs decide. A safety net
    for honest use, not a boundary: a client of its own holding these credentials can
    still write any event to a topic they may write."""
    user = security_for(bootstrap).settings.get("sasl.username") or current_service()
    services = [s for s in topology.services if user in s.principals]
    allowed = {event for service in services for event in service.sends}
    if not any(current_service() in s.principals for s in services):
        return
    for event_type in sorted(event_types - allowed):
        senders = [s.name for s in topology.services if event_type in s.sends] or ["no service"]
        raise BadInput(
            f"{event_type} is sent by {', '.join(senders)}, not by "
            f"{', '.join(s.name for s in services)} (User:{user}): topics.yaml `sends` "
            "says who publishes what; nothing was sent"
        )


@click.command()
@click.option("--users", type=click.IntRange(1), default=100, show_default=True)
@click.option("--products", type=click.IntRange(1), default=50, show_default=True)
@click.option("--orders", type=click.IntRange(0), default=1000, show_default=True)
@click.option(
    "--rate",
    type=FiniteRange(min=0, min_open=True),
    help="Orders per second (default: as fast as possible).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same events.")
@click.option("--cancel-share", type=FiniteRange(0, 1), default=0.1, show_default=True)
@click.option("--ndjson", is_flag=True, help="Print the events as NDJSON instead of publishing.")
@bootstrap_option
def simulate(
    users: int,
    products: int,
    orders: int,
    rate: float | None,
    seed: int,
    cancel_share: float,
    ndjson: bool,
    bootstrap: str | None,
) -> None:
    """Publish realistic, deterministic shop traffic."""
    shop = Shop(ShopPlan(users, products, orders, seed, cancel_share))
    if ndjson:
        for event in shop.events():
            click.echo(json.dumps({TYPE_FIELD: event.event_type, **event.model_dump(mode="json")}))
        return
    reference = list(shop.reference_events())
    use_service("producer")
    ctx = context(bootstrap)
    source = "/ecomstream/simulate"
    with EventProducer(ctx.topology, ctx.bootstrap, source, **CLI_PRODUCER) as producer:
        producer.check_topics({e.event_type for e in reference} | SIMULATED_ORDER_EVENTS)
        receipts = Receipts(lambda index: f"line {index + 1} of its --ndjson")
        _publish_all(producer, reference, len(reference), receipts, quiet=True)
        paced = _paced(shop.order_events(), rate) if rate else shop.order_events()
        _publish_all(producer, paced, orders + round(orders * cancel_share), receipts)


def _paced(events: Iterator[Event], orders_per_second: float) -> Iterator[Event]:
    """Yield events so that orders leave at the given rate."""
    start = time.monotonic()
    sent = 0
    for event in events:
        if event.event_type == "OrderCreated":
            due = start + sent / orders_per_second
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            sent += 1
        yield event


def _publish_all(
    producer: EventProducer,
    events: Iterable[Event],
    expected: int,
    receipts: Receipts,
    quiet: bool = False,
) -> None:
    """Publish events with a progress bar on a terminal, then print a summary. A failure
    says which records were published and which not (a retry of all would repeat them)."""
    started = time.monotonic()
    counts: Counter[str] = Counter()
    try:
        with progress("publishing", expected, shown=not quiet) as advance:
            for event in events:
                producer.publish(event, receipts.track())
                counts[event.event_type] += 1
                advance(1)
            producer.flush(WAIT_S)
    except KafkaUnavailable as error:
        raise type(error)(f"{error}; {receipts.report()}") from error
    receipts.check()
    took = time.monotonic() - started
    total = sum(counts.values())
    kinds = ", ".join(f"{name} {n}" for name, n in counts.most_common())
    rate = total / took if took > 0 else float(total)
    click.echo(f"published {total} events in {took:.2f}s ({rate:,.0f}/s): {kinds}")
