"""`ecom replay`: rebuild a projection's view from the log, beside the live one.

The replay folds the projection's topics from their earliest offsets into a new
generation of its tables (a shadow copy), reading by assignment (no group join, so the
live runner keeps its partitions). Queries keep reading the live generation meanwhile.
Once the shadow has read as far as the log end it saw at the start, it reads on until it
has got as far as the live generation: the check and the switch are one transaction that
holds off the live writer (if the live one moved on meanwhile, the replay reads on and
tries again). A running projection worker notices the switch and carries on in the new
generation. Retired generations beyond the newest ECOM_KEEP_GENERATIONS (default 1) are
dropped after the switch; `ecom replay --gc` drops every retired one.

With ECOM_REPLAY_PROCESSES above 1 (default 1), a long replay (ECOM_REPLAY_PARALLEL_FROM
records or more, default 50,000) folds in that many processes side by side: process i
takes the partitions whose number is i modulo the count, in every topic of the
projection. That is safe when a projection's rows are keyed by the record key of the
events that touch them (Projection.partition_local, checked for the shop's events by a
unit test), its topics have as many partitions each, and none ever gained partitions
(which moves keys): one row, one partition number, one writer. The first process to
fail or die ends the others; the catch-up and the switch then run here, as for a short
replay.

Records fetched past a partition's stop offset are dropped; whenever the replay reads on,
it assigns every partition again at the offset it has stored, so nothing dropped is
skipped.

With --until (an offset, or a date-time) the replay stops there in every partition and
does not switch: the generation is a view of the past, for audits.

An interrupted replay keeps its generation (state `replaying`) and the offsets it
stored with each batch: `--resume` carries on from them, `--drop` throws it away.
Replayed events reach the projection marked as such (Envelope.replayed) and dead
letters written during a replay carry an `ecom_replay` header, so nothing downstream
takes them for new failures.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

from consumers.projection import Projection
from consumers.runner import BATCH, Progress, ProjectionRunner
from consumers.store import Store, open_store
from ecom.errors import BadInput, EcomError, KafkaUnavailable, ProcessFailed
from ecom.heap import few_full_collections
from ecom.kafka import (
    FIRST_OFFSET,
    Admin,
    Consumer,
    DeadLetters,
    Headers,
    KafkaException,
    Message,
    Partition,
    TopicPartition,
    consumer_config,
    kafka_error,
    take,
    use_service,
)
from ecom.kafka.security import current_service
from ecom.offset_plan import parse_datetime
from ecom.process import die_with
from ecom.progress import progress
from ecom.settings import LOG_FORMAT, get_settings
from ecom.topology import Topology

Report = Callable[[str], None]
LOG = logging.getLogger("ecom.projections")
REPLAYING = "replaying"
RETIRED = "retired"
PAST = "past"
CATCH_UP_S = 120.0
STOP_S = 10.0  # how long an ended process of a parallel replay gets to go
LIBRDKAFKA = "ecom.librdkafka"
GRACE_S = 30.0  # a live runner notices a switch within a second and a batch
CATCH_UP_POLL_S = 0.05  # short: the shadow stays close to the log end


@dataclass
class Outcome:
    """What a replay did."""

    generation: int
    events: int
    seconds: float  # start to switch (or to the --until point)
    switched_from: int | None
    checksum: str
    checksum_seconds: float
    progress: Progress  # its times summed over the processes that folded
    processes: int = 1
    # seconds, plus the folding processes' own time (their start-up not counted) less
    # the time this one waited for them
    process_seconds: float = 0.0


@dataclass(frozen=True)
class Share:
    """One process's part of a parallel replay: its partitions and where they stop."""

    projection: Projection
    store_url: str
    topology: Topology
    bootstrap: str
    generation: int
    marks: Headers
    ends: dict[Partition, int]
    service: str  # the principal to connect as (a process-wide choice)


class Replay:
    """Rebuild one projection into a new generation."""

    def __init__(self, projection: Projection, store: Store, topology: Topology,
                 bootstrap: str, report: Report, processes: int | None = None) -> None:  # fmt: skip
        self.processes = processes  # else ECOM_REPLAY_PROCESSES
        self.projection = projection
        self.store = store
        self.topology = topology
        self.bootstrap = bootstrap
        self.report = report
        self.topics = [topology.topic(t).name for t in projection.topics]

    def unfinished(self) -> int | None:
        """Return the generation of an interrupted replay, if there is one."""
        found = [
            g.generation
            for g in self.store.generations(self.projection.name)
            if g.state == REPLAYING
        ]
        return found[-1] if found else None

    def drop(self) -> int:
        generation = self.unfinished()
        if generation is None:
            raise BadInput(f"no interrupted replay of {self.projection.name} to drop")
        self.store.drop_tables(self.projection, generation)
        return generation

    def run(self, until: str | None = None, resume: bool = False) -> Outcome:
        """Replay into a new generation (or the interrupted one); switch unless `until`."""
        with few_full_collections():
            return self._run(until, resume)

    def _run(self, until: str | None, resume: bool) -> Outcome:
        started = time.monotonic()
        stop = parse_until(until)  # before anything is created: a bad one leaves nothing
        admin = Admin(self.bootstrap)  # and Kafka is asked first, for the same reason
        partitions = admin.partitions(dict.fromkeys(self.topics))
        ends = self._ends(admin, partitions, stop)
        generation = self._generation(until, resume)
        runner = ProjectionRunner(self.projection, self.store, self.topology, self.bootstrap,
                                  generation=generation, replayed=True)  # fmt: skip
        runner.check_binding()
        self.report(f"replaying {self.projection.name} into generation {generation} ...")
        marks: Headers = [
            ("ecom_replay", f"{self.projection.name} generation {generation}".encode())
        ]
        dead_letters = runner.dead_letters(marks)
        shares, elsewhere = self._shares(runner, partitions, ends, marks), 0.0
        if len(shares) > 1:
            elsewhere = self._read_apart(runner, shares)
        else:
            with self.store.bulk_writes():  # restored before the switch, which is durable
                self._read(runner, dead_letters, partitions, ends)
        indexing = time.monotonic()
        self.store.ensure_indexes(self.projection, generation)  # once, over every row
        LOG.info("%s: generation %d indexed in %.2fs (SQLite: the database's write lock "
                 "was held meanwhile)", self.projection.name, generation,
                 time.monotonic() - indexing)  # fmt: skip
        switched = None
        if until is None:
            switched = self._catch_up_and_switch(runner, dead_letters, partitions)
            drop_retired(self.store, self.projection, get_settings().keep_generations)
        else:
            self.store.set_state(self.projection.name, generation, PAST)
        seconds = time.monotonic() - started
        checksum = self.store.checksum(self.projection, generation)
        checksum_seconds = time.monotonic() - started - seconds
        return Outcome(generation, runner.progress.applied, seconds, switched, checksum,
                       checksum_seconds, runner.progress, len(shares),
                       seconds + elsewhere)  # fmt: skip

    def _generation(self, until: str | None, resume: bool) -> int:
        interrupted = self.unfinished()
        if interrupted is not None:
            if resume:
                return interrupted
            raise BadInput(
                f"an interrupted replay of {self.projection.name} exists (generation "
                f"{interrupted}): add --resume to carry on, or --drop to throw it away"
            )
        if resume:
            raise BadInput(f"no interrupted replay of {self.projection.name} to resume")
        known = [g.generation for g in self.store.generations(self.projection.name)]
        generation = max(known, default=0) + 1
        self.store.create_generation(self.projection, generation, REPLAYING, until,
                                     indexed=False)  # fmt: skip
        return generation

    def _ends(self, admin: Admin, partitions: list[Partition], stop: int | datetime | None
              ) -> dict[Partition, int]:  # fmt: skip
        """Where to stop in each partition: the log end now, or the --until point."""
        latest = admin.ends(partitions)
        if stop is None:
            return latest
        if isinstance(stop, int):
            return {tp: min(stop, end) for tp, end in latest.items()}
        found = admin.at_time(partitions, _ms(stop))
        return {tp: found[tp] if found.get(tp, -1) >= 0 else latest[tp] for tp in partitions}

    def _shares(self, runner: ProjectionRunner, partitions: list[Partition],
                ends: dict[Partition, int], marks: Headers) -> list[Share]:  # fmt: skip
        """Split the partitions between processes by number, when the backlog is worth it
        and the projection allows it; one share means: read here."""
        settings = get_settings()
        stored = self.store.offsets(self.projection.name, runner.generation)
        backlog = sum(
            max(0, end - (stored[tp].next_offset if tp in stored else 0))
            for tp, end in ends.items()
        )
        counts = {topic: sum(1 for t, _ in partitions if t == topic) for topic in self.topics}
        wanted = self.processes or settings.replay_processes
        processes = min(wanted, min(counts.values(), default=1))
        if (
            processes < 2
            or backlog < settings.replay_parallel_from
            or not self.projection.partition_local
            or len(set(counts.values())) > 1  # one key, one partition number: not here
        ):
            return [self._share(runner, ends, marks)]
        split = [
            {tp: e for tp, e in ends.items() if tp[1] % processes == i} for i in range(processes)
        ]
        return [self._share(runner, part, marks) for part in split]

    def _share(self, runner: ProjectionRunner, ends: dict[Partition, int], marks: Headers
               ) -> Share:  # fmt: skip
        return Share(self.projection, self.store.url, self.topology, self.bootstrap,
                     runner.generation, marks, ends, current_service())  # fmt: skip

    def _read_apart(self, runner: ProjectionRunner, shares: list[Share]) -> float:
        """Fold each share in a process of its own; show progress from the offsets they
        store, and add their counts and times to the runner's. The first process to fail
        or die ends the others; what they stored stays for --resume. Return the seconds
        the processes spent, summed, minus the time this one waited for them."""
        name, generation = self.projection.name, runner.generation
        self.report(f"  folding in {len(shares)} processes side by side ...")
        ends = {tp: end for share in shares for tp, end in share.ends.items()}
        start, began = self._read_so_far(generation, ends), time.monotonic()
        context = multiprocessing.get_context("spawn")  # no forked Kafka or SQLite handles
        answers = context.Queue()
        levels = {"": logging.getLogger().getEffectiveLevel(), LIBRDKAFKA: _level(LIBRDKAFKA)}
        args = [(i, share, os.getpid(), levels, answers) for i, share in enumerate(shares)]
        processes = [context.Process(target=_read_share, args=a, daemon=True) for a in args]
        done: dict[int, tuple[Progress, float]] = {}
        try:
            with _sigint_ignored():  # inherited: Ctrl-C is the parent's to answer
                for process in processes:
                    process.start()
            with progress(f"replaying {name}", sum(ends.values()) - start) as advance:
                shown = start
                while len(done) < len(processes):
                    _collect(answers, done, wait=0.5)
                    _check_exits(processes, done, answers, name)
                    now = self._read_so_far(generation, ends)
                    advance(now - shown)
                    shown = now
        finally:
            _end(processes)
        for part, _ in done.values():
            _add(runner.progress, part)
        return sum(seconds for _, seconds in done.values()) - (time.monotonic() - began)

    def _read_so_far(self, generation: int, ends: dict[Partition, int]) -> int:
        stored = self.store.offsets(self.projection.name, generation)
        return sum(min(stored[tp].next_offset, end) for tp, end in ends.items() if tp in stored)

    def _read(self, runner: ProjectionRunner, dead_letters: DeadLetters,
              partitions: list[Partition], ends: dict[Partition, int],
              shown: bool = True) -> None:  # fmt: skip
        """Read every partition from the offset this generation has stored up to `ends`,
        with a consumer of its own: records fetched past a stop offset are dropped, and
        the next read starts again from what was stored, so none is ever skipped. (A
        consumer that paused partitions and is assigned again can leave one without a
        fetch position, so a round never reuses one.)"""
        consumer = Consumer(self._consumer_config())
        try:
            self._assign(consumer, runner, partitions, ends)
            self._read_until(consumer, runner, dead_letters, ends, shown)
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer, runner: ProjectionRunner,
                partitions: list[Partition], ends: dict[Partition, int]) -> None:  # fmt: skip
        stored = self.store.offsets(self.projection.name, runner.generation)
        assigned = []
        for topic, partition in partitions:
            row = stored.get((topic, partition))
            runner.next_offsets[(topic, partition)] = row.next_offset if row else 0
            offset = row.next_offset if row else FIRST_OFFSET
            assigned.append(TopicPartition(topic, partition, offset))
        consumer.assign(assigned)
        self._pause_finished(consumer, runner, ends)

    def _read_until(self, consumer: Consumer, runner: ProjectionRunner,
                    dead_letters: DeadLetters, ends: dict[Partition, int],
                    shown: bool) -> None:  # fmt: skip
        """Fold every partition up to its end offset, reporting progress."""
        total = sum(max(0, end - runner.next_offsets.get(tp, 0)) for tp, end in ends.items())
        end_of_log = 2**63  # partitions without a stop point: read what is there
        with progress(f"replaying {self.projection.name}", total, shown) as advance:
            while not runner.has_read(ends):
                batch: list[Message] = []
                for message in take(consumer, BATCH, 0.5):
                    if not runner.fresh(message):
                        continue
                    tp = (message.topic() or "", message.partition() or 0)
                    if (message.offset() or 0) < ends.get(tp, end_of_log):
                        batch.append(message)
                if batch:
                    runner.apply(consumer, batch, dead_letters)
                    advance(len(batch))
                self._pause_finished(consumer, runner, ends)

    def _pause_finished(self, consumer: Consumer, runner: ProjectionRunner,
                        ends: dict[Partition, int]) -> None:  # fmt: skip
        finished = [
            TopicPartition(t, p)
            for (t, p), end in ends.items()
            if runner.next_offsets.get((t, p), 0) >= end
        ]
        if finished:
            consumer.pause(finished)

    def _catch_up_and_switch(self, runner: ProjectionRunner, dead_letters: DeadLetters,
                             partitions: list[Partition]) -> int | None:  # fmt: skip
        """Read on, everything that arrives, until the shadow has read at least as far as
        the live generation, and switch: the check and the switch are one transaction,
        tried after every batch. Return the old generation."""
        name = self.projection.name
        consumer = Consumer(self._consumer_config())
        try:
            self._assign(consumer, runner, partitions, {})
            stale = self._stale_in_live(runner.generation)
            deadline = time.monotonic() + CATCH_UP_S
            while time.monotonic() < deadline:
                old, ahead = self.store.switch_if_caught_up(name, runner.generation, stale)
                if not ahead:
                    return old
                batch = [m for m in take(consumer, BATCH, CATCH_UP_POLL_S) if runner.fresh(m)]
                if batch:
                    runner.apply(consumer, batch, dead_letters)
        finally:
            consumer.close()
        raise KafkaUnavailable(
            f"the replay of {name} could not catch up with the live view in {CATCH_UP_S:.0f}s"
        )

    def _stale_in_live(self, generation: int) -> frozenset[str]:
        """The topics whose offsets in the live view say nothing about this replay's: it
        was built from another cluster or another incarnation of them (why this replay
        runs, usually), so the replay need not catch up with them."""
        bound = {g.generation: g for g in self.store.generations(self.projection.name)}
        live = bound.get(self.store.active_generation(self.projection.name) or 0)
        if live is None or live.cluster_id is None:
            return frozenset()
        shadow = bound[generation]
        logical = self.projection.topics
        if live.cluster_id != shadow.cluster_id:
            return frozenset(self.topology.topic(t).name for t in logical)
        return frozenset(
            self.topology.topic(t).name
            for t in logical
            if live.topic_ids.get(t) not in (None, shadow.topic_ids.get(t))
        )

    def _consumer_config(self) -> dict[str, object]:
        return consumer_config(self.bootstrap, self.topology.replay_group(self.projection.name))


def _read_share(index: int, share: Share, parent: int, levels: dict[str, int],
                answers: Queue[Any]) -> None:  # fmt: skip
    """In a process of a parallel replay: fold the share's partitions up to their ends
    and answer (with our index) the progress and the seconds it took, or the error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent ends us
    die_with(parent)
    logging.basicConfig(level=levels[""], format=LOG_FORMAT)
    logging.getLogger(LIBRDKAFKA).setLevel(levels[LIBRDKAFKA])
    use_service(share.service)
    started = time.monotonic()
    try:
        answers.put((index, (_fold_share(share), time.monotonic() - started)))
    except EcomError as error:
        answers.put((index, error))
    except KafkaException as error:  # not picklable as it is
        answers.put((index, kafka_error(f"replay of {share.projection.name}", error)))
    except Exception as error:  # noqa: BLE001 - reaches the parent as one line
        failed = ProcessFailed(f"a process of the {share.projection.name} replay: {error!r}")
        answers.put((index, failed))


def _fold_share(share: Share) -> Progress:
    with open_store(share.store_url) as store, few_full_collections():
        replay = Replay(share.projection, store, share.topology, share.bootstrap, _silent)
        runner = ProjectionRunner(share.projection, store, share.topology, share.bootstrap,
                                  generation=share.generation, replayed=True)  # fmt: skip
        dead_letters = runner.dead_letters(share.marks)
        with store.bulk_writes():
            replay._read(runner, dead_letters, list(share.ends), share.ends, shown=False)
        dead_letters.flush()
        return runner.progress


def _collect(answers: Queue[Any], done: dict[int, tuple[Progress, float]], wait: float) -> None:
    """Take every answer that has come (waiting up to `wait` for the first); raise the
    first error among them."""
    try:
        answer = answers.get(timeout=wait)
        while True:
            index, result = answer
            if isinstance(result, BaseException):
                raise result
            done[index] = result
            answer = answers.get_nowait()
    except queue.Empty:
        return


def _check_exits(processes: Sequence[BaseProcess], done: dict[int, tuple[Progress, float]],
                 answers: Queue[Any], name: str) -> None:  # fmt: skip
    """Fail if a process ended without answering (its answer may still be in the pipe:
    take what came first, an error included)."""
    for index, process in enumerate(processes):
        if index in done or process.exitcode is None:
            continue
        _collect(answers, done, wait=1.0)  # an exited process's answer is in the pipe
        if index not in done:
            raise ProcessFailed(
                f"a process of the {name} replay {_how(process.exitcode)}; "
                f"`ecom replay {name} --resume` carries on from what it stored"
            )


def _how(code: int) -> str:
    if code == 0:
        return "ended without an answer"
    if code > 0:
        return f"died (exit code {code})"
    try:
        return f"died (killed by {signal.Signals(-code).name})"
    except ValueError:
        return f"died (killed by signal {-code})"


def _end(processes: Sequence[BaseProcess]) -> None:
    """Stop the processes still running (after a failure, or done and shutting down)."""
    started = [process for process in processes if process.pid is not None]
    for process in started:
        if process.is_alive():
            process.terminate()
    for process in started:
        process.join(STOP_S)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; ours is not the CLI's then
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _level(logger: str) -> int:
    return logging.getLogger(logger).getEffectiveLevel()


def _add(total: Progress, part: Progress) -> None:
    for field in fields(Progress):
        if field.name != "started":
            setattr(total, field.name, getattr(total, field.name) + getattr(part, field.name))


def _silent(_: str) -> None:
    """Report nothing."""


def parse_until(until: str | None) -> int | datetime | None:
    """Parse --until: an offset (0 or more) or an ISO-8601 date-time (None: the log end)."""
    if until is None:
        return None
    if until.strip().lstrip("-").isdigit():
        offset = int(until)
        if offset < 0:
            raise BadInput(f"--until {until}: an offset is 0 or more")
        return offset
    return parse_datetime(until)


def drop_retired(store: Store, projection: Projection, keep: int) -> list[int]:
    """Drop a projection's retired generations but the newest `keep`; return those dropped.
    The one retired by a switch less than GRACE_S ago stays whatever `keep` says: live
    runners may still be writing to it until they notice the switch."""
    retired = [g.generation for g in store.generations(projection.name) if g.state == RETIRED]
    switched = store.switched_at(projection.name)
    if retired and switched is not None and _age(switched) < GRACE_S:
        retired.pop()
    dropped = retired[: max(0, len(retired) - keep)]
    for generation in dropped:
        store.drop_tables(projection, generation)
    return dropped


def _age(at: datetime) -> float:
    return (datetime.now(UTC) - at).total_seconds()


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
