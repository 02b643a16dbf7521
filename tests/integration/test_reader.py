"""Reading from a partition's first record (FIRST_OFFSET) on a log whose start moved on,
and `take`, which returns what has arrived instead of waiting for a whole batch."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ecom.kafka import FIRST_OFFSET, TopicReader, client_config, read_to_end, take
from tests.conftest import KafkaCluster
from tests.support import unique, wait_for

pytestmark = pytest.mark.kafka
RECORDS = 10
TRIMMED_TO = 4  # partition 0 starts here; partition 1 at 0


@pytest.fixture
def topic(kafka: KafkaCluster) -> Iterator[str]:
    """Two partitions of RECORDS records each, valued '<partition>:<index>'; partition 0
    trimmed to start at TRIMMED_TO."""
    name = unique("reader-")
    admin = AdminClient(client_config(kafka.bootstrap))
    admin.create_topics([NewTopic(name, 2, 1)])[name].result()
    producer = Producer(client_config(kafka.bootstrap))
    for partition in range(2):
        for i in range(RECORDS):
            producer.produce(name, f"{partition}:{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    trim = TopicPartition(name, 0, TRIMMED_TO)
    admin.delete_records([trim])[trim].result()
    yield name
    admin.delete_topics([name])


def expected() -> list[str]:
    return sorted(
        [f"0:{i}" for i in range(TRIMMED_TO, RECORDS)] + [f"1:{i}" for i in range(RECORDS)]
    )


def values(messages: list[Message]) -> list[str]:
    return sorted((m.value() or b"").decode() for m in messages if m.error() is None)


def test_read_to_end_reads_a_trimmed_log_from_its_start(kafka: KafkaCluster, topic: str) -> None:
    seen: list[Message] = []
    ends = read_to_end(kafka.bootstrap, topic, [0, 1], seen.append, timeout=60)
    assert ends == {0: RECORDS, 1: RECORDS}
    assert values(seen) == expected()


def test_topic_reader_reads_a_trimmed_log_from_its_start(kafka: KafkaCluster, topic: str) -> None:
    seen: list[Message] = []
    with TopicReader(kafka.bootstrap, [topic], seen.append, name="test-trimmed") as reader:
        assert reader.wait_until_current(60)
    assert values(seen) == expected()


def test_take_returns_what_arrived_without_waiting_for_a_full_batch(
    kafka: KafkaCluster, topic: str
) -> None:
    settings = {"group.id": unique("g"), "enable.auto.commit": False,
                "auto.offset.reset": "earliest"}  # fmt: skip
    consumer = Consumer(client_config(kafka.bootstrap, **settings))
    consumer.assign([TopicPartition(topic, p, FIRST_OFFSET) for p in range(2)])
    got: list[Message] = []
    try:
        started = time.monotonic()
        first = take(consumer, 1000, 120)
        waited = time.monotonic() - started
        # librdkafka's consume(1000, 120) would hold these records for all 120 s
        assert first
        assert len(first) < 1000
        assert waited < 60
        got += first
        wanted = len(expected())

        def more() -> bool:
            got.extend(take(consumer, 1000, 0.2))
            return len(values(got)) >= wanted

        wait_for(more, 60, "every record of the topic")
    finally:
        consumer.close()
    assert values(got) == expected()
