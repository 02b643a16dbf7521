"""Plumbing every order-flow worker shares: its faust app, reading and publishing events.

Each service (inventory, pricing, payment, order) is a faust app of its own: its own
consumer group, tables and changelog topics, so each can be run, stopped and scaled
alone. Topics are topics.yaml's (faust never creates one), values are our Avro bytes.

Delivery is at least once. Every event a worker publishes has an id derived from the
event that caused it, so when a crash makes a worker process an event again, what it
publishes again carries the same ids and the next worker drops the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from faust.types import EventT

from ecom.errors import DecodeError, InvalidEvent
from ecom.kafka import LOW_LATENCY, BytesProducer, DeadLetters, Failed
from ecom.settings import Settings
from ecom.topology import Topology
from schemas import Codec, Event, headers

LOG = logging.getLogger("ecom.streams")
NAMESPACE = uuid.UUID("9b1f6d1e-2f35-4c55-9a1e-6f0d9c1e7a01")
BATCH = 500
BATCH_WITHIN_S = 0.05
RESTART_DELAY_S = 2.0
Records = Sequence[EventT[Any]]


def derived_id(cause_id: str, *parts: str) -> str:
    """Return the id of an event caused by event `cause_id` (the same every time)."""
    return str(uuid.uuid5(NAMESPACE, "/".join((cause_id, *parts))))


def make_app(service: str, topology: Topology, bootstrap: str, settings: Settings) -> faust.App:
    """Build the faust app of one service."""
    name = topology.flow_app(service)
    brokers = ";".join(f"kafka://{server}" for server in bootstrap.split(","))
    datadir = settings.home / ".ecom" / "faust" / name
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        name,
        broker=brokers,
        store="memory://",
        datadir=str(datadir),
        processing_guarantee="at_least_once",
        producer_acks=-1,
        producer_linger_ms=2,
        topic_allow_declare=False,  # topics.yaml owns every topic
        topic_disable_leader=True,
        topic_partitions=topology.topic("orders").spec.partitions,
        key_serializer="raw",
        value_serializer="raw",
        # Table keys are record keys (bytes), table values JSON. Both settings matter:
        # faust reads changelogs back with them on recovery.
        table_key_serializer="raw",
        table_value_serializer="json",
        web_enabled=False,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        # A restarted worker takes its partitions back at once (static membership),
        # instead of waiting for the dead one's session to time out.
        consumer_group_instance_id=f"{name}-{socket.gethostname()}",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        table_standby_replicas=0,
    )


class Flow:
    """A service's view of the topics: decode what it reads, publish what it decides."""

    def __init__(self, app: faust.App, topology: Topology, service: str, bootstrap: str) -> None:
        self.app = app
        self.topology = topology
        self.dead_letters = DeadLetters(
            BytesProducer(bootstrap, **LOW_LATENCY),
            topology.dead_letters("order-flow").name,
            topology.flow_app(service),
        )
        self.source = f"/ecomstream/worker/{service}"
        self.service = service
        self.codec = Codec()
        self._topics: dict[str, Any] = {}
        self._pending: list[asyncio.Future[Any]] = []
        self._generation: int | None = None
        self._last: dict[Any, int] = {}  # per topic-partition: the last offset handed over

    async def consume(self, stream: Any, handle: Callable[[Records], Awaitable[None]]) -> None:
        """Feed a stream to `handle` in batches; a batch is done, and its offsets can be
        committed, only once Kafka has acknowledged everything published while handling
        it. If anything fails instead, the worker restarts from its last commit: faust
        would otherwise restart the agent alone, with the failed batch never acknowledged
        and the commits stuck behind it."""
        try:
            # noack_take: faust's take_events acks a batch in a `finally`, even when the
            # batch was interrupted; we ack only what was fully handled.
            async for records in stream.noack_take(BATCH, within=BATCH_WITHIN_S):
                generation = await self._settled_generation()
                await handle(self._in_order(records))
                await self.settle()
                if self.app.rebalancing or self.app.consumer_generation_id != generation:
                    # faust's table recovery after the rebalance may have read the
                    # changelog without this batch's writes: start clean, from the commit.
                    LOG.warning("%s: rebalanced mid-batch; restarting the worker", self.service)
                    restart_process()
                for record in records:
                    await stream.ack(record)
        except asyncio.CancelledError:
            if not self.app.should_stop:  # not a shutdown: a batch was left half done
                LOG.error("the %s agent was cancelled; restarting the worker", self.service)
                restart_process()
            raise
        except Exception:
            LOG.exception("the %s worker failed; restarting from its last commit", self.service)
            restart_process()

    async def _settled_generation(self) -> int:
        """Wait until no rebalance or table recovery is running; return the generation.

        A rebalance after the first makes faust recover its in-memory tables from the
        changelog again, racing with whatever this worker writes meanwhile; a fresh
        process is the safe way on (at least once: nothing committed is lost)."""
        while self.app.rebalancing or self.app.in_recovery:
            await asyncio.sleep(0.05)
        generation = int(self.app.consumer_generation_id)
        if self._generation is None:
            self._generation = generation
        elif generation != self._generation:
            LOG.warning("%s: the group rebalanced; restarting the worker", self.service)
            restart_process()
        return generation

    async def settle(self) -> None:
        """Wait until Kafka has acknowledged everything published so far."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    def track(self, sent: Any) -> None:
        """Count a send (such as a changelog write) in what settle() waits for."""
        self._pending.append(sent)

    def save(self, table: Any, record: EventT[Any], value: Any, key: Any = None) -> None:
        """Set table[key or record.key] from within a batch (a batch has no single
        current event, so the changelog partition is named: the record's own)."""
        key = record.key if key is None else key
        table.data[key] = value
        self._pending.append(table.send_changelog(record.message.partition, key, value))

    def skipped(self, record: EventT[Any], expected: int) -> None:
        """faust handed over a record past others it never delivered: start afresh
        (nothing of the batch is acknowledged, so the new process reads them)."""
        message = record.message
        LOG.error(
            "%s: %s[%d] jumped from offset %d to %d; restarting the worker",
            self.service, message.topic, message.partition, expected, message.offset,
        )  # fmt: skip
        restart_process()

    def _in_order(self, records: Records) -> Records:
        """Drop records delivered again; restart on a gap (every record of our topics
        comes to this agent, and our topics have no transaction markers)."""
        fresh = []
        for record in records:
            tp, offset = record.message.tp, record.message.offset
            last = self._last.get(tp)
            if last is not None and offset <= last:
                continue
            if last is not None and offset > last + 1:
                self.skipped(record, last + 1)
            self._last[tp] = offset
            fresh.append(record)
        return fresh

    def topic(self, *names: str) -> Any:
        """Return a faust topic (or a channel of several) for topics.yaml names."""
        full = [self.topology.topic(name).name for name in names]
        key = ",".join(full)
        if key not in self._topics:
            self._topics[key] = self.app.topic(
                *full,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=self.topology.topic(names[0]).spec.partitions,
            )
        return self._topics[key]

    def table(self, name: str) -> Any:
        """Return a table whose changelog is topics.yaml's `<app id>-<name>-changelog`."""
        partitions = self.topology.changelog(self.service, name).spec.partitions
        return self.app.Table(name, partitions=partitions, key_type=bytes)

    async def decode(self, record: EventT[Any]) -> Event | None:
        """Decode a record; dead-letter it (and return None) if it cannot be read."""
        try:
            return self.codec.decode(record.value)
        except (DecodeError, InvalidEvent) as error:
            await self.dead_letter(record, error)
            return None

    async def dead_letter(self, record: EventT[Any], error: BaseException) -> None:
        """Park a record in the order-flow DLQ with its story; return once Kafka has
        acknowledged it (dead letters are rare, so the batch may wait for them)."""
        message = record.message
        LOG.warning(
            "dead letter %s[%d]@%d: %s", message.topic, message.partition, message.offset, error
        )
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
        self.dead_letters.send(failed, error)
        await asyncio.to_thread(self.dead_letters.flush)

    async def publish(self, event: Event) -> asyncio.Future[Any]:
        """Publish an event to its topic, keyed per topics.yaml, with CloudEvents headers;
        return the future of its acknowledgement."""
        topic = self.topology.for_event(event.event_type)
        key = str(getattr(event, topic.key_field(event.event_type)))
        sent: asyncio.Future[Any] = await self.topic(topic.spec.name).send(
            key=key.encode(), value=self.codec.encode(event), headers=headers(event, self.source)
        )
        self._pending.append(sent)
        return sent


def restart_process() -> None:
    """Replace this worker with a fresh process (same pid, same static membership);
    at-least-once delivery makes that safe: nothing past the last commit is lost."""
    time.sleep(RESTART_DELAY_S)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606 - ourselves again
