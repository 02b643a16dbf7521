"""Plumbing every order-flow worker shares: its faust app, reading records in order,
publishing what it decides, and its state, committed in checkpoints.

Each service (inventory, pricing, payment, order) is a faust app of its own: its own
consumer group and changelog, so each can be run, stopped and scaled alone. faust runs
the consumer group and hands records to the agent in batches; everything the agent
sends (events, dead letters, state) goes through one confluent-kafka producer
(idempotent, acks=all), and one Committer per worker owns the commit order (see
streams.checkpoint). The state is the worker's own Table (streams.state), not a faust
table: faust-streaming's table recovery raced with the live stream under rebalances
and broker failures (records fed to the recovery loop, offsets skipped), and the
workers had to restart themselves around it.

Records reach a handler once and in offset order per partition: a record below its
partition's cursor was handled already and is skipped; a record past it means faust
skipped some, and the worker seeks back to the cursor instead of going on (logged and
counted as a rewind). A partition without a cursor starts at its log's first record,
whatever offset the consumer group committed. Anything a handler cannot handle goes
to order-flow-dlq with the kafka_dlt-* headers, and the worker goes on.

Delivery is at least once: every event a worker publishes has an id derived from the
event that caused it, so a replayed record publishes the same ids and the next worker
drops the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import faust
from faust.types import TP, EventT

from ecom import metrics
from ecom.errors import DecodeError, InvalidEvent, KafkaRefused, KafkaUnavailable
from ecom.kafka import (
    Admin,
    BytesProducer,
    DeadLetters,
    Failed,
    OutcomeCallback,
    Partition,
    security_for,
)
from ecom.process import instance_id
from ecom.settings import Settings
from ecom.topology import Topology
from schemas import Codec, Event, headers
from streams.checkpoint import Checkpoint, Committer, Deliveries
from streams.eager import EagerApp
from streams.state import Retention, Row, Table

LOG = logging.getLogger("ecom.streams")
NAMESPACE = uuid.UUID("9b1f6d1e-2f35-4c55-9a1e-6f0d9c1e7a01")
BATCH = 500
BATCH_WITHIN_S = 0.05
START_WITHIN_S = 60.0  # how long a partition's log start offset may stay unknown
EXIT_DELIVERY_FAILED = 75  # a send was never acknowledged: restart from the last commit
EXIT_AGENT_FAILED = 70  # a bug outside any one record's handling
# A batch's outputs leave together: the committer waits for all of them anyway.
OUTPUTS = {"linger.ms": 10, "batch.size": 1_000_000}
R = TypeVar("R", bound=Row)


def derived_id(cause_id: str, *parts: str) -> str:
    """Return the id of an event caused by event `cause_id` (the same every time)."""
    return str(uuid.uuid5(NAMESPACE, "/".join((cause_id, *parts))))


def make_app(service: str, topology: Topology, bootstrap: str, settings: Settings) -> faust.App:
    """Build the faust app of one service."""
    name = topology.flow_app(service)
    brokers = ";".join(f"kafka://{server}" for server in bootstrap.split(","))
    datadir = settings.home / ".ecom" / "faust" / name
    datadir.mkdir(parents=True, exist_ok=True)
    instance = instance_id(settings.instances_path, name, settings.host_id)
    return EagerApp(
        name,
        broker=brokers,
        store="memory://",
        datadir=str(datadir),
        processing_guarantee="at_least_once",
        topic_allow_declare=False,  # topics.yaml owns every topic
        topic_disable_leader=True,
        topic_partitions=topology.topic("orders").spec.partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        # Offsets are committed soon after the committer acks a checkpoint.
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        # Static membership: a restarted worker takes its partitions back at once. The
        # slot tells two workers of one service on one host apart, and a restarted
        # worker gets its old slot (and id) back.
        consumer_group_instance_id=instance,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        stream_wait_empty=True,
        broker_credentials=_credentials(bootstrap),
    )


def _credentials(bootstrap: str) -> faust.auth.Credentials | None:
    """The worker's security settings (ecom.kafka.security) in faust's terms."""
    security = security_for(bootstrap)
    context = security.ssl_context()
    if "SASL" in security.protocol:
        return faust.SASLCredentials(
            username=security.settings["sasl.username"],
            password=security.settings["sasl.password"],
            ssl_context=context,
            mechanism=security.settings.get("sasl.mechanisms", "SCRAM-SHA-512"),
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


TAKE, DUPLICATE, GAP, STALE = "take", "duplicate", "gap", "stale"


class Lineup:
    """Keeps each topic-partition's records in line: every offset handled once, in order.

    A record below its partition's cursor was handled already (DUPLICATE: acked, not
    handled again). One above it means records before it never came (GAP: the caller
    seeks back to the cursor, and every record of that partition is STALE until the
    one sought arrives). A record in line (TAKE) moves the cursor on.

    faust may deliver the rest of a batch fetched before the seek and, its read offset
    moved past the records sought, drop them when they come again: a STALE offset seen
    a second time means the seek was lost, and the caller seeks again (GAP)."""

    def __init__(self, table: Table[Any]) -> None:
        self.table = table
        self._rewinding: dict[tuple[str, int], int] = {}
        self._last_stale: dict[tuple[str, int], int] = {}

    def forget_rewinds(self) -> None:
        """Drop the seeks back still awaited (the consumer was moved since)."""
        self._rewinding.clear()
        self._last_stale.clear()

    def check(self, topic: str, partition: int, offset: int) -> tuple[str, int]:
        """Return the verdict on a record, and the cursor it was judged by."""
        where = (topic, partition)
        wanted = self._rewinding.get(where)
        if wanted is not None:
            if offset != wanted:
                last = self._last_stale.get(where, -1)
                self._last_stale[where] = offset
                if offset <= last:  # delivered again, and still not the one sought
                    del self._last_stale[where]
                    return GAP, wanted
                return STALE, wanted
            del self._rewinding[where]
            self._last_stale.pop(where, None)
        cursor = self.table.cursor(partition, topic)
        if cursor is not None and offset < cursor:
            return DUPLICATE, cursor
        if cursor is not None and offset > cursor:
            self._rewinding[(topic, partition)] = cursor
            return GAP, cursor
        self.table.advance(partition, topic, offset + 1)
        return TAKE, offset


@dataclass
class Input:
    """A record handed to a worker's handler, decoded."""

    record: EventT[Any]
    event: Event
    topic: str  # the name in topics.yaml
    partition: int
    offset: int
    key: bytes


Handle = Callable[[list[Input]], Awaitable[None]]


async def log_start(
    starts: Callable[[list[Partition]], dict[Partition, int]],
    where: Partition,
    within: float = START_WITHIN_S,
) -> int:
    """Return a partition's log start offset, asking again while it is unknown (Kafka
    answers -1001 while the partition has no leader, or does not answer at all for a
    while, a broker being down or restarting)."""
    deadline = time.monotonic() + within
    while True:
        failed: KafkaUnavailable | None = None
        try:
            start = (await asyncio.to_thread(starts, [where]))[where]
        except KafkaRefused:
            raise
        except KafkaUnavailable as error:
            failed, start = error, -1
        if start >= 0:
            return start
        if time.monotonic() > deadline:  # the agent fails, and the worker restarts
            if failed is not None:
                raise failed
            raise RuntimeError(f"no log start offset for {where[0]}[{where[1]}]: {start}")
        if failed is not None:
            LOG.warning("log start of %s[%d] unknown yet: %s", *where, failed)
        await asyncio.sleep(0.5)


class Flow(Generic[R]):
    """A service's view of Kafka: read in order, publish, keep state, commit."""

    def __init__(
        self,
        app: faust.App,
        topology: Topology,
        service: str,
        bootstrap: str,
        table: tuple[str, type[R]],
    ) -> None:
        self.app = app
        self.topology = topology
        self.bootstrap = bootstrap
        self.service = service
        self.source = f"/ecomstream/worker/{service}"
        self.codec = Codec()
        self.producer = BytesProducer(bootstrap, **OUTPUTS)
        name, row_type = table
        self.table: Table[R] = Table(row_type, topology.changelog(service, name).name, bootstrap)
        self.dead_letters = DeadLetters(
            self.producer, topology.dead_letters("order-flow").name, app.conf.id
        )
        self.counts: Counter[str] = Counter()  # rewinds, duplicates, dead letters ...
        self._logical: dict[str, str] = {}
        self._faust_topics: dict[str, Any] = {}
        self._current: Checkpoint | None = None
        self._committer: Committer | None = None
        self._ack: Callable[[Sequence[EventT[Any]]], Awaitable[None]] | None = None
        self._wanted: frozenset[str] = frozenset()
        self._admin: Admin | None = None  # made when a partition without a cursor shows up
        self.lineup = Lineup(self.table)
        self._stop_polling = threading.Event()
        threading.Thread(target=self._poll, name="delivery-reports", daemon=True).start()
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]

    # -- reading -----------------------------------------------------------------------

    def topic(self, *names: str) -> Any:
        """Return the faust topic (a channel of several) for topics.yaml names."""
        full = [self.topology.topic(name).name for name in names]
        self._logical.update({f: n for f, n in zip(full, names, strict=True)})
        key = ",".join(full)
        if key not in self._faust_topics:
            self._faust_topics[key] = self.app.topic(
                *full,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=self.topology.topic(names[0]).spec.partitions,
            )
        return self._faust_topics[key]

    async def consume(self, stream: Any, handle: Handle, wanted: frozenset[str]) -> None:
        """Feed a stream's records of the `wanted` event types to `handle` in batches, each
        batch one checkpoint (the others are only counted as read: never decoded)."""
        self._wanted = wanted

        async def ack(records: Sequence[EventT[Any]]) -> None:
            for record in records:
                await stream.ack(record)

        self._ack = ack
        committer = self._committer = Committer(self.producer, self.table, ack, self._committed)
        commits = asyncio.ensure_future(committer.run())
        commits.add_done_callback(self._committer_done)
        loop = asyncio.get_running_loop()
        try:
            # noack_take: records are acked by the committer, after their checkpoint.
            async for records in stream.noack_take(BATCH, within=BATCH_WITHIN_S):
                checkpoint = self._current = Checkpoint(Deliveries(loop))
                inputs = await self._accept(records, checkpoint)
                if inputs:
                    started = time.perf_counter()
                    await handle(inputs)
                    handled = time.perf_counter() - started
                    metrics.BATCH_SECONDS.labels(self.service, "handle").observe(handled)
                checkpoint.changes = self.table.take_changes()
                checkpoint.outputs.seal()
                self._current = None
                await committer.submit(checkpoint)
        except asyncio.CancelledError:
            raise  # the worker is stopping
        except BaseException as error:
            # faust would restart the agent alone, with this batch never acked and the
            # commits stuck behind it: the whole worker restarts from its last commit.
            LOG.exception("%s: the agent failed (%s); exiting to restart", self.service, error)
            os._exit(EXIT_AGENT_FAILED)
        finally:
            commits.cancel()
            self.table.close()

    async def _accept(self, records: Sequence[EventT[Any]], checkpoint: Checkpoint) -> list[Input]:
        """Decode the records that are next in line; skip duplicates, rewind on gaps."""
        inputs = []
        for record in records:
            message = record.message
            topic, partition, offset = message.topic, message.partition, message.offset
            if not await self._in_line(topic, partition):
                await self._release(record)
                continue
            verdict, cursor = self.lineup.check(topic, partition, offset)
            if verdict == STALE:
                continue  # not acked: faust delivers it again after the seek
            if verdict == GAP:
                await self._rewind(message.tp, cursor, offset)
                continue
            checkpoint.records.append(record)  # acked with this checkpoint
            metrics.RECORDS_CONSUMED.labels(self.service, topic).inc()
            if verdict == DUPLICATE:
                self.counts["duplicates-skipped"] += 1
                continue
            kind = self.codec.event_type(record.value)
            if kind is not None and kind not in self._wanted:
                continue  # another worker's business: never decoded
            event = self._decode(record, checkpoint)
            if event is not None:
                key = message.key or b""
                inputs.append(Input(record, event, self._logical[topic], partition, offset, key))
        return inputs

    async def _release(self, record: EventT[Any]) -> None:
        """Let go of a record of a partition taken from us while we waited for its state.
        faust's revocation waits for every record an agent holds, so this is a guard. Acked
        so that no later revocation waits for it; its offset may then be committed, and the
        partition's next owner starts from the cursor in the changelog all the same."""
        message = record.message
        LOG.warning("%s: %s[%d] was taken from us while its state loaded; %d left to its owner",
                    self.service, message.topic, message.partition, message.offset)  # fmt: skip
        if self._ack is not None:
            await self._ack([record])

    async def _in_line(self, topic: str, partition: int) -> bool:
        """Wait for a partition's state and cursor; False if it was revoked meanwhile.

        A partition no worker ever handled starts at its log's first record: faust was
        seen to start such a partition at its end after a rebalance (and to commit past
        what it skipped), so the cursor is set, and the lineup seeks back if needed."""
        if not await self.table.ready(partition):
            return False
        if self.table.cursor(partition, topic) is not None:
            return True
        if self._admin is None:
            self._admin = Admin(self.bootstrap)
        start = await log_start(self._admin.starts, (topic, partition))
        if not await self.table.ready(partition):  # it may have gone (and come back)
            return False
        if self.table.cursor(partition, topic) is None:
            self.table.advance(partition, topic, start)
        return True

    async def _rewind(self, tp: TP, cursor: int, offset: int) -> None:
        LOG.warning(
            "%s: faust handed over %s[%d]@%d, past %d not yet handled; seeking back",
            self.service, tp.topic, tp.partition, offset, cursor,
        )  # fmt: skip
        self.counts["rewinds"] += 1
        metrics.REWINDS.labels(self.service).inc()
        await self.app.consumer.seek(tp, cursor)

    def _decode(self, record: EventT[Any], checkpoint: Checkpoint) -> Event | None:
        try:
            return self.codec.decode(record.value)
        except (DecodeError, InvalidEvent) as error:
            self.dead_letter(record, error)
            return None

    async def _on_assigned(self, _: Any, assigned: set[TP], **__: Any) -> None:
        """Keep the state of partitions still ours, load what is new, drop the rest. faust
        seeks every partition to its committed offset now, so a seek back still awaited
        is void: the next record is judged afresh (and seeks again if need be)."""
        ours = set(self._logical)
        self.table.assign({tp.partition for tp in assigned if tp.topic in ours})
        self.lineup.forget_rewinds()

    # -- handling ----------------------------------------------------------------------

    async def each(self, inputs: list[Input], handle: Callable[[Input], Awaitable[None]]) -> None:
        """Handle inputs one by one; one that fails goes to the DLQ, the others go on. An
        input whose effect its row holds already (handled before a crash that persisted
        the row but not the cursor) is skipped."""
        for item in inputs:
            full = self.topology.topic(item.topic).name
            if self.table.holds(item.partition, item.key, full, item.offset):
                self.counts["replays-skipped"] += 1
                continue
            self.table.handling = (full, item.offset)
            try:
                await handle(item)
            except Exception as error:  # noqa: BLE001 - parked in the DLQ, never lost
                self.dead_letter(item.record, error)
            finally:
                self.table.handling = None

    async def forget(self, retention: Retention[R]) -> None:
        """Drop rows finished long enough ago, and persist their tombstones now (in a
        checkpoint of their own: no batch may come to carry them)."""
        if not retention.tick(datetime.now(UTC)) or self._committer is None:
            return
        checkpoint = Checkpoint(Deliveries(asyncio.get_running_loop()))
        checkpoint.changes = self.table.take_deletions()
        checkpoint.outputs.seal()
        await self._committer.submit(checkpoint)

    # -- writing -----------------------------------------------------------------------

    def publish(self, event: Event, on_outcome: OutcomeCallback | None = None) -> None:
        """Publish an event to its topic, keyed per topics.yaml, with CloudEvents headers;
        its delivery belongs to the current checkpoint (outside one, it goes to
        on_outcome, or a failure is logged)."""
        topic = self.topology.for_event(event.event_type)
        key = str(getattr(event, topic.key_field(event.event_type)))
        self.producer.produce(
            topic.name,
            self.codec.encode(event),
            key,
            headers(event, self.source),
            on_outcome=on_outcome or self._tracker(),
        )

    def dead_letter(self, record: EventT[Any], error: BaseException) -> None:
        """Park a record in the order-flow DLQ with its story (within the checkpoint)."""
        message = record.message
        LOG.warning(
            "%s: dead letter %s[%d]@%d: %s",
            self.service, message.topic, message.partition, message.offset, error,
        )  # fmt: skip
        self.counts["dead-letters"] += 1
        metrics.DEAD_LETTERS.labels(self.service, message.topic).inc()
        found: Any = message.headers or []
        failed = Failed(
            message.topic,
            message.partition,
            message.offset,
            int(message.timestamp * 1000),
            "CreateTime",
            message.key,
            message.value,
            list(found.items()) if isinstance(found, dict) else list(found),
        )
        self.dead_letters.send(failed, error, on_outcome=self._tracker())

    def _committed(self, _: Checkpoint, seconds: float) -> None:
        metrics.CHECKPOINT_SECONDS.labels(self.service).observe(seconds)

    def _tracker(self) -> Callable[[Any], None]:
        if self._current is not None:
            return self._current.outputs.track()
        return self._log_failure

    def _log_failure(self, outcome: Any) -> None:
        if isinstance(outcome, Exception):
            LOG.error("%s: a send outside any checkpoint failed: %s", self.service, outcome)

    def _poll(self) -> None:
        while not self._stop_polling.is_set():
            self.producer.poll(0.05)

    def _committer_done(self, commits: asyncio.Future[None]) -> None:
        if commits.cancelled() or commits.exception() is None:
            return
        LOG.error(
            "%s: %s; exiting so that the worker restarts from its last commit",
            self.service, commits.exception(),
        )  # fmt: skip
        os._exit(EXIT_DELIVERY_FAILED)
