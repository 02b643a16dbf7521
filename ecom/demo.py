"""`ecom demo`: show the system working end to end.

For now: a durable round trip of real events. Scratch copies of the topics (same specs
as topics.yaml, a `demo-` prefix) are created; a user, a product with price and stock,
and an order are published with acks=all; they are read back, decoded and printed;
the scratch topics are deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer

from ecom.errors import KafkaUnavailable
from ecom.kafka import client_config
from ecom.topics_admin import scratch_topology
from ecom.topology import Topology
from producers.producer import EventProducer
from schemas import (
    Codec,
    Event,
    Money,
    OrderCreated,
    OrderLine,
    PriceChanged,
    ProductCreated,
    StockAdjusted,
    UserCreated,
)

Report = Callable[[str], None]


def demo_events() -> list[Event]:
    """A user, a product with a price and stock, and an order."""
    return [
        UserCreated(user_id="u-ada", email="ada@example.com", name="Ada Lovelace", country="DE"),
        ProductCreated(product_id="p-mug", name="Mug", category="standard"),
        PriceChanged(product_id="p-mug", price=Money(amount_minor=1299, currency="EUR")),
        StockAdjusted(product_id="p-mug", quantity=10, reason="delivery"),
        OrderCreated(
            order_id="o-1",
            user_id="u-ada",
            lines=(OrderLine(product_id="p-mug", quantity=2),),
            shipping_country="DE",
            currency="EUR",
        ),
    ]


def round_trip(topology: Topology, bootstrap: str, report: Report) -> None:
    """Publish the demo events to scratch topics, read them back, delete the topics."""
    events = demo_events()
    with scratch_topology(topology, bootstrap, "demo") as scratch:
        report(f"created {len(scratch.topics())} scratch topics under {scratch.prefix}*")
        with EventProducer(scratch, bootstrap, "/ecomstream/demo") as producer:
            for event in events:
                delivery = producer.publish_and_wait(event)
                report(f"  wrote {event.event_type:<15} key {delivery.key:<6} -> "
                       f"{delivery.topic}[{delivery.partition}]@{delivery.offset}")  # fmt: skip
        names = sorted({scratch.for_event(e.event_type).name for e in events})
        for topic, partition, offset, event in _read(bootstrap, names, len(events)):
            report(f"  read  {event.event_type:<15} {topic}[{partition}]@{offset}: "
                   f"{event.model_dump_json(exclude={'event_id', 'occurred_at'})}")  # fmt: skip
    report(f"deleted the scratch topics under {scratch.prefix}*")


def _read(bootstrap: str, topics: list[str], count: int) -> list[tuple[str, int, int, Event]]:
    consumer = Consumer(
        client_config(
            bootstrap, **{"group.id": f"{topics[0]}-demo", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe(topics)
    codec = Codec()
    read: list[tuple[str, int, int, Event]] = []
    deadline = time.monotonic() + 30
    try:
        while len(read) < count and time.monotonic() < deadline:
            for message in consumer.consume(count, timeout=0.5):
                if message.error() is None:
                    event = codec.decode(message.value())
                    read.append(
                        (
                            message.topic() or "",
                            message.partition() or 0,
                            message.offset() or 0,
                            event,
                        )
                    )
    finally:
        consumer.close()
    if len(read) < count:
        raise KafkaUnavailable(f"read back {len(read)} of {count} events")
    return read
