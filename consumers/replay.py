"""`ecom replay`: rebuild a projection's view from the log, beside the live one.

The replay folds the projection's topics from their earliest offsets into a new
generation of its tables (a shadow copy), reading by assignment (no group join, so the
live runner keeps its partitions). Queries keep reading the live generation meanwhile.
Once the shadow has read as far as the log end it saw at the start AND as far as the
live generation has got, one transaction points the view at it; a running projection
worker notices the switch and carries on in the new generation.

With --until (an offset, or a date-time) the replay stops there in every partition and
does not switch: the generation is a view of the past, for audits.

An interrupted replay keeps its generation (state `replaying`) and the offsets it
stored with each batch: `--resume` carries on from them, `--drop` throws it away.
Replayed events reach the projection marked as such (Envelope.replayed) and dead
letters written during a replay carry an `ecom_replay` header, so nothing downstream
takes them for new failures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from consumers.projection import Projection
from consumers.runner import BATCH, ProjectionRunner
from consumers.store import Store
from ecom.errors import BadInput, KafkaUnavailable
from ecom.kafka import (
    OFFSET_BEGINNING,
    Admin,
    Consumer,
    DeadLetters,
    Headers,
    Message,
    Partition,
    TopicPartition,
    consumer_config,
)
from ecom.offset_plan import parse_datetime
from ecom.topology import Topology

Report = Callable[[str], None]
REPLAYING = "replaying"
PAST = "past"
REPORT_EVERY_S = 1.0
CATCH_UP_ROUNDS = 100


@dataclass
class Outcome:
    """What a replay did."""

    generation: int
    events: int
    seconds: float
    switched_from: int | None
    checksum: str


class Replay:
    """Rebuild one projection into a new generation."""

    def __init__(self, projection: Projection, store: Store, topology: Topology,
                 bootstrap: str, report: Report) -> None:  # fmt: skip
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
        started = time.monotonic()
        generation = self._generation(until, resume)
        runner = ProjectionRunner(self.projection, self.store, self.topology, self.bootstrap,
                                  generation=generation, replayed=True)  # fmt: skip
        runner.check_binding()
        admin = Admin(self.bootstrap)
        partitions = admin.partitions(dict.fromkeys(self.topics))
        ends = self._ends(admin, partitions, until)
        self.report(f"replaying {self.projection.name} into generation {generation} ...")
        consumer = Consumer(self._consumer_config())
        marks: Headers = [
            ("ecom_replay", f"{self.projection.name} generation {generation}".encode())
        ]
        dead_letters = runner.dead_letters(marks)
        try:
            self._assign(consumer, runner, partitions, ends)
            self._read_until(consumer, runner, dead_letters, ends)
            switched = None
            if until is None:
                self._catch_up_with_live(consumer, runner, dead_letters, admin, partitions)
                switched = self.store.switch(self.projection.name, generation)
            else:
                self.store.set_state(self.projection.name, generation, PAST)
        finally:
            consumer.close()
        checksum = self.store.checksum(self.projection, generation)
        seconds = time.monotonic() - started
        return Outcome(generation, runner.progress.applied, seconds, switched, checksum)

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
        self.store.create_generation(self.projection, generation, REPLAYING, until)
        return generation

    def _ends(self, admin: Admin, partitions: list[Partition], until: str | None
              ) -> dict[Partition, int]:  # fmt: skip
        """Where to stop in each partition: the log end now, or the --until point."""
        latest = admin.ends(partitions)
        if until is None:
            return latest
        if until.strip().lstrip("-").isdigit():
            offset = int(until)
            if offset < 0:
                raise BadInput(f"--until {until}: an offset is 0 or more")
            return {tp: min(offset, end) for tp, end in latest.items()}
        at = parse_datetime(until)
        found = admin.at_time(partitions, _ms(at))
        return {tp: found[tp] if found.get(tp, -1) >= 0 else latest[tp] for tp in partitions}

    def _assign(self, consumer: Consumer, runner: ProjectionRunner,
                partitions: list[Partition], ends: dict[Partition, int]) -> None:  # fmt: skip
        stored = self.store.offsets(self.projection.name, runner.generation)
        assigned = []
        for topic, partition in partitions:
            row = stored.get((topic, partition))
            runner.next_offsets[(topic, partition)] = row.next_offset if row else 0
            offset = row.next_offset if row else OFFSET_BEGINNING
            assigned.append(TopicPartition(topic, partition, offset))
        consumer.assign(assigned)
        self._pause_finished(consumer, runner, ends)

    def _read_until(self, consumer: Consumer, runner: ProjectionRunner,
                    dead_letters: DeadLetters, ends: dict[Partition, int]) -> None:  # fmt: skip
        """Fold every partition up to its end offset, reporting progress."""
        total = sum(max(0, end - runner.next_offsets.get(tp, 0)) for tp, end in ends.items())
        done, last_report = 0, time.monotonic()
        end_of_log = 2**63  # partitions without a stop point: read what is there
        while not runner.has_read(ends):
            batch: list[Message] = []
            for message in consumer.consume(BATCH, timeout=0.5):
                if not runner.fresh(message):
                    continue
                tp = (message.topic() or "", message.partition() or 0)
                if (message.offset() or 0) < ends.get(tp, end_of_log):
                    batch.append(message)
            if batch:
                runner.apply(consumer, batch, dead_letters)
                done += len(batch)
            self._pause_finished(consumer, runner, ends)
            if time.monotonic() - last_report > REPORT_EVERY_S and sys.stderr.isatty():
                last_report = time.monotonic()
                share = done / total if total else 1.0
                print(f"\r  {done}/{total} events ({share:.0%})", end="", file=sys.stderr)
        if sys.stderr.isatty():
            print(file=sys.stderr)

    def _pause_finished(self, consumer: Consumer, runner: ProjectionRunner,
                        ends: dict[Partition, int]) -> None:  # fmt: skip
        finished = [
            TopicPartition(t, p)
            for (t, p), end in ends.items()
            if runner.next_offsets.get((t, p), 0) >= end
        ]
        if finished:
            consumer.pause(finished)

    def _catch_up_with_live(self, consumer: Consumer, runner: ProjectionRunner,
                            dead_letters: DeadLetters, admin: Admin,
                            partitions: list[Partition]) -> None:  # fmt: skip
        """Read on until the shadow has read at least as far as the live generation."""
        wanted = set(partitions)
        for _ in range(CATCH_UP_ROUNDS):
            live = self.store.active_generation(self.projection.name)
            stored = self.store.offsets(self.projection.name, live) if live else {}
            ahead = {tp: row.next_offset for tp, row in stored.items() if tp in wanted}
            if runner.has_read(ahead):
                return
            consumer.resume([TopicPartition(t, p) for t, p in partitions])
            self._read_until(consumer, runner, dead_letters, ahead)
        raise KafkaUnavailable(
            f"the replay of {self.projection.name} could not catch up with the live view"
        )

    def _consumer_config(self) -> dict[str, object]:
        return consumer_config(self.bootstrap, self.topology.replay_group(self.projection.name))


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
