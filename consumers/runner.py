"""The projection runner: Kafka in, one database transaction per batch out.

Loop: consume a batch, decode, fold (pure), park what cannot be read or applied in the
dead-letter topic (acknowledged first), write rows AND next offsets in one transaction,
then commit the same offsets to Kafka so Kafka's own tooling shows the lag. On
assignment it seeks to the offsets in the database, never Kafka's, so a kill at any
instant resumes exactly where the view is.

Before reading anything it checks the view belongs to this cluster and these topics
(cluster id, topic ids, offsets within the log), and stops with StaleView if not; it
checks the topic ids again every few seconds, so a topic recreated under a running runner
stops it too.

Runners of one projection on several hosts share the group's partitions. Each batch is a
compare-and-set on the stored offsets: if another runner wrote a partition since this
one read it (a rebalance both saw at different times), the store refuses the batch
(Fenced) and this runner drops its row cache and re-reads from the stored offsets.

A consumer that hits a fatal error (fenced by another consumer with its group.instance.id,
which a broker restart can also cause) is closed and replaced by one with the same id,
which takes the membership back and reads on from the stored offsets. A runner whose
consumers keep failing so (a second process with the same instance id) stops instead of
fighting it forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from consumers.engine import Engine
from consumers.health import Pulse
from consumers.projection import Envelope, Position, Projection
from consumers.store import OffsetRow, Store
from ecom import faults, metrics
from ecom.errors import (
    ClientFailed,
    DecodeError,
    Fenced,
    InvalidEvent,
    KafkaRefused,
    KafkaUnavailable,
    StaleView,
)
from ecom.heap import few_full_collections
from ecom.kafka import (
    FIRST_OFFSET,
    LOW_LATENCY,
    Admin,
    BytesProducer,
    Consumer,
    DeadLetters,
    Failed,
    Headers,
    KafkaException,
    Message,
    TopicPartition,
    consumer_config,
    is_fatal,
    take,
)
from ecom.process import held_instance_id
from ecom.settings import get_settings
from ecom.topology import Topology
from schemas import Codec

LOG = logging.getLogger("ecom.projections")
BATCH = 5000
SWITCH_CHECK_S = 1.0
TOPIC_CHECK_S = 5.0
# Kafka's copy of the stored offsets (for the lag tooling) trails the view by at most
# this while records flow: a batch is whatever has arrived, and need not cost a request.
REPORT_EVERY_S = 1.0
DLQ_OWNER = "projections"
# This many fatal consumer errors within ECOM_RUNNER_FATAL_WINDOW_S: another process holds
# the instance id.
FATAL_LIMIT = 3


@dataclass
class Progress:
    """What a runner has done so far."""

    read: int = 0
    applied: int = 0
    dead_letters: int = 0
    batches: int = 0
    fenced: int = 0
    replaced: int = 0  # consumers closed and made anew after a fatal error
    started: float = field(default_factory=time.monotonic)
    # Where the time of apply() went, in seconds: decoding, folding, the database.
    decode_s: float = 0.0
    fold_s: float = 0.0
    store_s: float = 0.0


class ProjectionRunner:
    """Keep one projection's view up to date from Kafka."""

    def __init__(
        self,
        projection: Projection,
        store: Store,
        topology: Topology,
        bootstrap: str,
        group: str | None = None,
        generation: int | None = None,
        replayed: bool = False,
    ) -> None:
        self.projection = projection
        self.store = store
        self.topology = topology
        self.bootstrap = bootstrap
        self.group = group or topology.projection_group(projection.name)
        self.codec = Codec()
        self.progress = Progress()
        self.stop_event = threading.Event()
        self._logical = {topology.topic(t).name: t for t in projection.topics}
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.replayed = replayed
        self.generation = generation if generation is not None else self._generation()
        self.engine = Engine(projection, store, self.generation)
        self._checked_switch = time.monotonic()
        self._checked_topics = time.monotonic()
        self._topic_ids: dict[str, str] = {}
        self.pulse: Pulse | None = None
        self._unreported: dict[tuple[str, int], int] = {}  # stored, not yet told to Kafka
        self._next_report = 0.0
        self.instance = ""  # group.instance.id, once running
        self._failed_at: list[float] = []  # when consumers hit fatal errors, lately

    # -- start-up checks -----------------------------------------------------------------

    def _generation(self) -> int:
        generation = self.store.active_generation(self.projection.name)
        if generation is None:
            generation = 1
            self.store.create_generation(self.projection, generation, "active")
        return generation

    def check_binding(self) -> None:
        """Refuse to continue a view built from another cluster or another topic incarnation."""
        name = self.projection.name
        admin = Admin(self.bootstrap)
        cluster_id = admin.cluster_id()
        topic_ids = {self._logical[t]: i for t, i in admin.topic_ids(self._logical).items()}
        generation = next(
            g for g in self.store.generations(name) if g.generation == self.generation
        )
        self._topic_ids = topic_ids
        if generation.cluster_id is None:
            self.store.bind(name, self.generation, cluster_id, topic_ids)
            return
        if generation.cluster_id != cluster_id:
            raise StaleView(
                f"the {name} view was built from Kafka cluster {generation.cluster_id}, but "
                f"{self.bootstrap} is cluster {cluster_id} (wiped or replaced?); refusing to "
                f"serve a stale view: rebuild it with `ecom replay {name}`"
            )
        self._compare_topic_ids(generation.topic_ids, topic_ids)
        self._check_offsets_in_log(admin)

    def _compare_topic_ids(self, bound: dict[str, str], now: dict[str, str]) -> None:
        name = self.projection.name
        for topic, topic_id in now.items():
            if bound.get(topic) not in (None, topic_id):
                raise StaleView(
                    f"topic {topic} was deleted and recreated since the {name} view was built; "
                    f"refusing to serve a stale view: rebuild it with `ecom replay {name}`"
                )

    def _recheck_topics(self) -> None:
        """Every few seconds: stop if a topic was recreated while this runner ran."""
        if time.monotonic() - self._checked_topics < TOPIC_CHECK_S:
            return
        self._checked_topics = time.monotonic()
        try:
            now = Admin(self.bootstrap).topic_ids(self._logical)
        except KafkaUnavailable as error:  # deleted, not yet recreated, or brokers away
            LOG.warning("%s: cannot check the topic ids: %s", self.projection.name, error)
            return
        self._compare_topic_ids(self._topic_ids, {self._logical[t]: i for t, i in now.items()})

    def _check_offsets_in_log(self, admin: Admin) -> None:
        stored = self.store.offsets(self.projection.name, self.generation)
        ends = admin.log_ends(self._logical)
        for (topic, partition), row in sorted(stored.items()):
            end = ends.get((topic, partition))
            if end is None or row.next_offset > end:
                raise StaleView(
                    f"the {self.projection.name} view has read {topic}[{partition}] up to "
                    f"offset {row.next_offset}, but the log there ends at {end}; the log was "
                    f"truncated or recreated: rebuild it with `ecom replay {self.projection.name}`"
                )

    # -- the loop ----------------------------------------------------------------------

    def run(self, on_batch: Callable[[ProjectionRunner], None] | None = None) -> None:
        """Consume and apply until stop() is called."""
        self.check_binding()
        settings = get_settings()
        with held_instance_id(settings.instances_path, self.group, settings.host_id) as instance:
            if not self.replayed:  # a replay's lag says nothing of the view being served
                self.pulse = Pulse(self.store, self.projection.name, instance, settings)
            self.instance = instance
            self.consumer = self._subscribed(instance)
            try:
                with few_full_collections():  # a large row cache: see ecom.heap
                    self._loop(self.consumer, on_batch)
            finally:
                self._report_offsets(self.consumer)
                self.consumer.close()
                self.store.close()

    def _subscribed(self, instance: str) -> Consumer:
        consumer = Consumer(self._consumer_config(instance))
        consumer.subscribe(list(self._logical), on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)  # fmt: skip
        return consumer

    def _loop(
        self, consumer: Consumer, on_batch: Callable[[ProjectionRunner], None] | None
    ) -> None:
        dead_letters = self.dead_letters()
        while not self.stop_event.is_set():
            try:
                if self._step(consumer, dead_letters) and on_batch is not None:
                    on_batch(self)
            except ClientFailed as error:
                consumer = self._replace(consumer, error)
            except Fenced as error:
                LOG.warning(
                    "%s: %s; re-reading from the stored offsets", self.projection.name, error
                )
                self.progress.fenced += 1
                metrics.FENCED.labels(self.group).inc()
                self._seek_to_stored(consumer, consumer.assignment())
            self._follow_switch(consumer)
            self._recheck_topics()
            if self.pulse is not None:
                self.pulse.tick(partial(self._kafka_answers, consumer))

    def _replace(self, consumer: Consumer, error: ClientFailed) -> Consumer:
        """Close a consumer that hit a fatal error and join with a new one under the same
        group.instance.id, which takes the membership back; on assignment it reads on from
        the stored offsets. Stop when that keeps happening: another process has the id."""
        self.next_offsets.clear()  # nothing is ours until assigned again
        self._unreported.clear()  # a failed consumer can commit nothing
        now, window = time.monotonic(), get_settings().runner_fatal_window_s
        self._failed_at = [t for t in self._failed_at if now - t < window] + [now]
        if len(self._failed_at) >= FATAL_LIMIT:
            raise KafkaRefused(
                f"{error}; its consumer {self.instance} hit {FATAL_LIMIT} fatal errors in "
                f"{window:g}s: is another process running this projection with the "
                "same instance id (the same ECOM_HOST_ID)? Stop one of them"
            ) from error
        LOG.warning("%s; replacing the consumer", error)
        self.progress.replaced += 1
        metrics.CONSUMERS_REPLACED.labels(self.group).inc()
        consumer.close()
        replacement = self._subscribed(self.instance)
        self.consumer = replacement  # only now: run()'s finally closes what this names
        return replacement

    def _kafka_answers(self, consumer: Consumer) -> bool:
        try:
            consumer.list_topics(next(iter(self._logical)), timeout=2)
        except KafkaException:
            return False
        return True

    def dead_letters(self, marks: Headers | None = None) -> DeadLetters:
        """Return where this runner parks what it cannot decode or apply."""
        dlq = self.topology.dead_letters(DLQ_OWNER).name
        return DeadLetters(BytesProducer(self.bootstrap, **LOW_LATENCY), dlq, self.group, marks)

    def has_read(self, ends: dict[tuple[str, int], int]) -> bool:
        """Tell whether the view holds every partition up to the given end offsets."""
        return all(self.next_offsets.get(key, 0) >= end for key, end in ends.items())

    def stop(self) -> None:
        """Ask the loop to finish its batch and return."""
        self.stop_event.set()

    def _consumer_config(self, instance: str) -> dict[str, object]:
        return consumer_config(
            self.bootstrap,
            self.group,
            **{
                # A restarted runner takes its partitions back at once, without waiting
                # for the killed one's session to time out: `<group>-<host>-<slot>`.
                "group.instance.id": instance,
                "session.timeout.ms": 10_000,
                # Also the rebalance timeout: how long a rebalance waits for a member
                # killed in the middle of it (default 5 minutes). A batch takes seconds.
                "max.poll.interval.ms": 60_000,
            },
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start every assigned partition at the offset stored with the view."""
        self.next_offsets.clear()
        self._unreported.clear()  # never commit for a partition another member may hold
        self.engine.forget()  # rows of partitions held elsewhere meanwhile may have changed
        for tp, offset in self._stored_positions(partitions).items():
            tp.offset = offset
        consumer.assign(partitions)
        LOG.info("%s: assigned %d partition(s)", self.projection.name, len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Tell Kafka what the view stored while the partitions are still ours."""
        self._report_offsets(consumer)
        self._forget(partitions)

    def _on_lost(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revoke: others may hold them already."""
        self._unreported.clear()
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        """Records of these partitions still in hand are not ours to apply (fresh())."""
        for tp in partitions:
            self.next_offsets.pop((tp.topic, tp.partition), None)

    def _stored_positions(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Map each partition to where the view's stored offsets say to read on, and
        remember them as what this runner has read."""
        stored = self.store.offsets(self.projection.name, self.generation)
        positions = {}
        for tp in partitions:
            row = stored.get((tp.topic, tp.partition))
            positions[tp] = row.next_offset if row else FIRST_OFFSET
            self.next_offsets[(tp.topic, tp.partition)] = row.next_offset if row else 0
        return positions

    def _seek_to_stored(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.engine.forget()
        self._unreported.clear()  # offsets of a fenced batch, or of the generation left
        for tp, offset in self._stored_positions(partitions).items():
            tp.offset = offset
            consumer.seek(tp)

    def _follow_switch(self, consumer: Consumer) -> None:
        """After `ecom replay` switched the view to a new generation, carry on in that
        one, from the offsets the replay stored with it."""
        if time.monotonic() - self._checked_switch < SWITCH_CHECK_S:
            return
        self._checked_switch = time.monotonic()
        active = self.store.active_generation(self.projection.name)
        if active is None or active == self.generation:
            return
        LOG.info("%s: the view switched to generation %d", self.projection.name, active)
        self.generation = active
        self.engine = Engine(self.projection, self.store, active)
        self._seek_to_stored(consumer, consumer.assignment())

    def _step(self, consumer: Consumer, dead_letters: DeadLetters) -> bool:
        messages = [m for m in take(consumer, BATCH, 0.5) if self.fresh(m)]
        if not messages:
            self._report_offsets(consumer)
            return False
        for row in self.apply(consumer, messages, dead_letters):
            self._unreported[(row.topic, row.partition)] = row.next_offset
        if time.monotonic() >= self._next_report:
            self._report_offsets(consumer)
        return True

    def _report_offsets(self, consumer: Consumer) -> None:
        """Commit the offsets stored with the view to Kafka, for the lag tooling (the
        view's own offsets are the ones the runner reads on from). Asynchronous: closing
        the consumer waits for it, and a stop must not hang on brokers that are away."""
        if not self._unreported:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._unreported.items()]
        self._unreported.clear()
        self._next_report = time.monotonic() + REPORT_EVERY_S
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:  # Kafka's copy only: the view holds them
            LOG.warning("%s: could not commit offsets to Kafka: %s", self.projection.name, error)

    def apply(
        self, consumer: Consumer, messages: list[Message], dead_letters: DeadLetters
    ) -> list[OffsetRow]:
        """Fold a batch into the view: dead letters acknowledged first, then rows and
        offsets in one transaction. Return the offsets stored."""
        started = time.perf_counter()
        envelopes, dead = self._decode(messages)
        decoded = time.perf_counter()
        folded = self.engine.fold([envelope for envelope, _ in envelopes])
        self.progress.decode_s += decoded - started
        self.progress.fold_s += time.perf_counter() - decoded
        self._observe("decode", decoded - started)
        self._observe("fold", time.perf_counter() - decoded)
        by_envelope = {id(envelope): message for envelope, message in envelopes}
        dead += [(by_envelope[id(envelope)], error) for envelope, error in folded.invalid]
        for message, error in dead:
            LOG.warning(
                "%s: dead letter %s[%d]@%d: %s",
                self.projection.name,
                message.topic(),
                message.partition(),
                message.offset(),
                error,
            )
            dead_letters.send(Failed.of(message), error)
        if dead:
            dead_letters.flush()  # acknowledged before the offsets move past them
        offsets = self._offsets(consumer, messages, envelopes)
        expected = dict(self.next_offsets)  # every partition held, not only the batch's
        stored = time.perf_counter()
        self.engine.commit(folded, offsets, expected)
        self.progress.store_s += time.perf_counter() - stored
        self._observe("commit", time.perf_counter() - stored)
        self._count(messages, dead, offsets)
        faults.reach("crash-after-db-commit")  # the crash test dies here: DB, not Kafka
        for row in offsets:
            self.next_offsets[(row.topic, row.partition)] = row.next_offset
        self.progress.read += len(messages)
        self.progress.applied += folded.applied
        self.progress.dead_letters += len(dead)
        self.progress.batches += 1
        return offsets

    def _observe(self, phase: str, seconds: float) -> None:
        metrics.BATCH_SECONDS.labels(self.group, phase).observe(seconds)

    def _count(self, messages: list[Message], dead: list[tuple[Message, Exception]],
               offsets: list[OffsetRow]) -> None:  # fmt: skip
        by_topic: dict[str, int] = {}
        for message in messages:
            by_topic[message.topic() or ""] = by_topic.get(message.topic() or "", 0) + 1
        for topic, count in by_topic.items():
            metrics.RECORDS_CONSUMED.labels(self.group, topic).inc(count)
        for message, _ in dead:
            metrics.DEAD_LETTERS.labels(self.group, message.topic() or "").inc()
        for row in offsets:
            if row.high_watermark is not None:
                lag = max(0, row.high_watermark - row.next_offset)
                metrics.LAG.labels(self.group, row.topic, str(row.partition)).set(lag)
                if self.pulse is not None:
                    self.pulse.note_lag(row.topic, row.partition, lag)

    def fresh(self, message: Message) -> bool:
        """Drop errors we ride out, and records the view already holds."""
        error = message.error()
        if error is not None:
            if is_fatal(error):
                raise ClientFailed(f"{self.projection.name}: {error.str()}")
            return False  # end of a partition, or what librdkafka retries itself
        # A partition not (or no longer) held has no next offset: its records are not ours.
        start = self.next_offsets.get((message.topic() or "", message.partition() or 0))
        return start is not None and (message.offset() or 0) >= start

    def _decode(
        self, messages: list[Message]
    ) -> tuple[list[tuple[Envelope, Message]], list[tuple[Message, Exception]]]:
        envelopes: list[tuple[Envelope, Message]] = []
        dead: list[tuple[Message, Exception]] = []
        decode, logical, replayed = self.codec.decode, self._logical, self.replayed  # once
        for message in messages:
            try:
                event = decode(message.value())
            except (DecodeError, InvalidEvent) as error:
                dead.append((message, error))
                continue
            position = Position(
                logical[message.topic() or ""], message.partition() or 0, message.offset() or 0
            )
            envelopes.append((Envelope(event, position, replayed), message))
        return envelopes, dead

    def _offsets(
        self,
        consumer: Consumer,
        messages: list[Message],
        envelopes: list[tuple[Envelope, Message]],
    ) -> list[OffsetRow]:
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            key = (message.topic() or "", message.partition() or 0)
            last[key] = max(last.get(key, -1), message.offset() or 0)
        latest: dict[tuple[str, int], datetime] = {}
        for envelope, message in envelopes:
            key = (message.topic() or "", message.partition() or 0)
            at = envelope.event.occurred_at
            latest[key] = max(latest.get(key, at), at)
        rows = []
        for (topic, partition), offset in last.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            event_time = (
                latest[(topic, partition)].isoformat() if (topic, partition) in latest else None
            )
            rows.append(
                OffsetRow(topic, partition, offset + 1, high if high >= 0 else None, event_time)
            )
        return rows
