"""`ecom demo`: show the cluster working end to end.

For now: a durable round trip. A scratch copy of the `orders` topic (same spec as
topics.yaml, a `demo-` prefix) is created, a few keyed records are written with
acks=all and read back in order, then the scratch topic is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, Producer

from ecom.errors import DeliveryFailed, KafkaUnavailable
from ecom.kafka import client_config
from ecom.topics_admin import TopicAdmin
from ecom.topics_plan import make_plan
from ecom.topology import Topology

Report = Callable[[str], None]
RECORDS = [("order-1", "created"), ("order-2", "created"), ("order-1", "paid")]


def round_trip(topology: Topology, bootstrap: str, report: Report) -> None:
    """Write a few keyed records to a scratch topic, read them back, delete the topic."""
    scratch = topology.with_prefix(f"demo-{int(time.time())}-")
    topic = scratch.topic("orders")
    admin = TopicAdmin(bootstrap)
    brokers = admin.broker_count()
    only_orders = Topology([topic.spec], scratch.prefix)
    admin.execute(make_plan(only_orders, {}, brokers, dev=brokers < 3))
    try:
        report(f"created {topic.name}: {topic.spec.partitions} partitions, RF {min(3, brokers)}")
        for key, value, partition, offset in _write(bootstrap, topic.name):
            report(f"  wrote   {key}={value} -> partition {partition} offset {offset}")
        for key, value, partition, offset in _read(bootstrap, topic.name, len(RECORDS)):
            report(f"  read    {key}={value} <- partition {partition} offset {offset}")
    finally:
        admin.delete([topic.name])
        report(f"deleted {topic.name}")


def _write(bootstrap: str, topic: str) -> list[tuple[str, str, int, int]]:
    producer = Producer(client_config(bootstrap, acks="all", **{"enable.idempotence": True}))
    written: list[tuple[str, str, int, int]] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            raise DeliveryFailed(f"record to {topic} not acknowledged: {error.str()}")
        written.append(_describe(message))

    for key, value in RECORDS:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    if producer.flush(30) != 0:
        raise DeliveryFailed(f"records to {topic} not acknowledged within 30 s")
    return written


def _read(bootstrap: str, topic: str, count: int) -> list[tuple[str, str, int, int]]:
    consumer = Consumer(
        client_config(bootstrap, **{"group.id": f"{topic}-reader", "auto.offset.reset": "earliest"})
    )
    consumer.subscribe([topic])
    read: list[tuple[str, str, int, int]] = []
    deadline = time.monotonic() + 30
    try:
        while len(read) < count and time.monotonic() < deadline:
            for message in consumer.consume(count, timeout=0.5):
                if message.error() is None:
                    read.append(_describe(message))
    finally:
        consumer.close()
    if len(read) < count:
        raise KafkaUnavailable(f"read back {len(read)} of {count} records from {topic}")
    return read


def _describe(message: Message) -> tuple[str, str, int, int]:
    key, value = message.key() or b"", message.value() or b""
    return key.decode(), value.decode(), message.partition() or 0, message.offset() or 0
