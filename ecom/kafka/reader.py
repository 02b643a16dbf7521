"""Read whole topics in a background thread: every partition, from the first offset,
without a consumer group, each record handed to a callback in its partition's order.

The pricing worker's replica of the reference data, the flow benchmark's watch for
final events and the tests' log followers are all one of these.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from ecom.errors import KafkaUnavailable
from ecom.kafka.admin import Admin, Partition, log_ends
from ecom.kafka.config import FIRST_OFFSET, client_config

Handle = Callable[[Message], None]
# No group (assigned partitions, nothing committed); FIRST_OFFSET needs the reset.
_READER = {"group.id": "unused", "enable.auto.commit": False, "auto.offset.reset": "earliest"}


def take(consumer: Consumer, most: int, timeout: float) -> list[Message]:
    """Return up to `most` records: wait up to `timeout` for the first, then take what has
    arrived meanwhile without waiting. (librdkafka's consume waits its whole timeout
    unless it gets all it asks for: a batch-sized ask held every partial batch.)"""
    first = consumer.consume(1, timeout)
    if not first or most <= 1:
        return first
    return first + consumer.consume(most - 1, 0)


class TopicReader:
    """Follow topics from their start until stopped."""

    def __init__(
        self, bootstrap: str, topics: Iterable[str], handle: Handle, name: str = "topic-reader"
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.handle = handle
        self.positions: dict[Partition, int] = {}  # next offset to read, per partition
        self.failure: BaseException | None = None
        self._admin: Admin | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def fresh(self) -> TopicReader:
        """Return a new reader of the same topics (a thread starts once)."""
        return TopicReader(self.bootstrap, self.topics, self.handle, self._thread.name)

    def start(self, timeout: float = 30.0) -> TopicReader:
        """Start reading; return once every partition is assigned."""
        self._thread.start()
        if not self._ready.wait(timeout) or self.failure is not None:
            self.stop()
            raise KafkaUnavailable(f"cannot read {', '.join(self.topics)}: {self.failure}")
        return self

    def stop(self) -> None:
        """Stop reading and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def __enter__(self) -> TopicReader:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def has_read(self, ends: dict[Partition, int]) -> bool:
        """Tell whether every partition has been read up to the given end offsets."""
        return all(self.positions.get(tp, 0) >= end for tp, end in ends.items() if end > 0)

    def wait_until_current(self, timeout: float = 10.0) -> bool:
        """Wait until everything in the topics right now has been read; tell whether it has."""
        if self._admin is None:
            self._admin = Admin(self.bootstrap)  # kept: a new client per call costs the brokers
        ends = self._admin.log_ends(self.topics)
        deadline = time.monotonic() + timeout
        while not self.has_read(ends):
            if self.failure is not None:
                raise KafkaUnavailable(f"reading {', '.join(self.topics)} failed: {self.failure}")
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        # A fetch returns as soon as a record arrives; the wait only paces idle polling,
        # and every request costs the brokers CPU (a 50 ms wait was a third of them).
        consumer = Consumer(client_config(self.bootstrap, **_READER, **{"fetch.wait.max.ms": 500}))
        try:
            consumer.assign(self._partitions(consumer))
            self._ready.set()
            while not self._stop.is_set():
                for message in take(consumer, 1000, 0.1):
                    if message.error() is None:
                        self.handle(message)
                        where = (message.topic() or "", message.partition() or 0)
                        self.positions[where] = (message.offset() or 0) + 1
        except BaseException as error:  # noqa: BLE001 - kept for the owner, who re-raises it
            self.failure = error
            self._ready.set()
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer, timeout: float = 15.0) -> list[TopicPartition]:
        deadline = time.monotonic() + timeout
        while True:  # a topic just created may not be known to every broker yet
            metadata = consumer.list_topics(timeout=10)
            missing = [t for t in self.topics if t not in metadata.topics]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"topics {missing} do not exist")
            time.sleep(0.2)
        return [
            TopicPartition(topic, partition, FIRST_OFFSET)
            for topic in self.topics
            for partition in metadata.topics[topic].partitions
        ]


def read_to_end(
    bootstrap: str, topic: str, partitions: list[int], handle: Handle, timeout: float = 120.0
) -> dict[int, int]:
    """Read partitions of a topic from their first offset up to the end they have now,
    handing each record to handle; return the end offset read up to, per partition.
    (A worker rebuilding its state from a changelog.)"""
    ends = {p: end for (_, p), end in log_ends(bootstrap, [topic]).items() if p in partitions}
    starts = {p: 0 for p in ends}
    wanted = {p: end for p, end in ends.items() if end > 0}
    if not wanted:
        return ends
    consumer = Consumer(client_config(bootstrap, **_READER, **{"enable.partition.eof": True}))
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, p, FIRST_OFFSET) for p in wanted])
        while any(starts[p] < end for p, end in wanted.items()):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read {topic} to its end within {timeout:.0f}s")
            for message in take(consumer, 1000, 0.5):
                partition, offset = message.partition() or 0, message.offset() or 0
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:  # compaction left a gap
                        starts[partition] = max(starts[partition], wanted.get(partition, 0))
                    continue  # other errors are transient; librdkafka retries
                if offset < wanted.get(partition, 0):
                    handle(message)
                starts[partition] = offset + 1
    finally:
        consumer.close()
    return ends


def live_keys(bootstrap: str, topic: str, partitions: list[int]) -> set[tuple[int, bytes]]:
    """Return (partition, key) of every key whose last record is not a tombstone: what a
    compacted topic still holds (to empty one, since such topics refuse DeleteRecords)."""
    live: set[tuple[int, bytes]] = set()

    def note(message: Message) -> None:
        where = (message.partition() or 0, message.key() or b"")
        if message.value() is None:
            live.discard(where)
        else:
            live.add(where)

    read_to_end(bootstrap, topic, partitions, note)
    return live
