"""`ecom compare queue-log`: the same records through a consumer group (the log) and a
share group (the queue).

Every run gets a fresh topic of `partitions` partitions, starts its workers (one process
each), waits until they have joined, then publishes the same `records` jobs. A worker
takes a job, works on it for `work_ms` (as a mail send would), writes down that it did,
and only then commits (consumer group: the offsets of its batch) or acknowledges (share
group: each record). Three checks:

  throughput  jobs per second with 1..N workers on the same few partitions;
  crash       one worker SIGKILLs itself after `crash_after` jobs, before committing or
              acknowledging its batch: what was done twice, and how long the rest took;
  replay      once every job is done: what a rewind gives back, and to whom.

Workers write one line per job handled (`key partition offset delivery time`), flushed
at once, so a killed worker's work is still counted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TextIO

from bench.base import run_kafka_tool, wait_until
from ecom.cli import output
from ecom.errors import ProcessFailed
from ecom.kafka import (
    BytesProducer,
    Consumer,
    GroupAdmin,
    Message,
    TopicAdmin,
    TopicPartition,
    consumer_config,
)
from ecom.kafka.queue import (
    ShareGroupSettings,
    configure_share_group,
    delivery_count,
    share_queue,
)
from ecom.kafka.topics import GROUPS_GONE_S
from ecom.process import Children, Spec, on_signals
from ecom.topics_plan import Change, Plan

Design = Literal["group", "share"]
LOG = logging.getLogger("ecom.bench")
LONG_LOCK_MS = 60_000  # the broker's ceiling: records held while the others join stay held
DESIGNS: tuple[Design, ...] = ("group", "share")
LABELS = {"group": "consumer group", "share": "share group"}
Report = Callable[[str], None]


@dataclass(frozen=True)
class Setup:
    records: int = 2000
    partitions: int = 2
    work_ms: float = 5.0
    workers: tuple[int, ...] = (1, 2, 4, 8)
    batch: int = 10
    crash_workers: int = 4
    crash_after: int = 100
    failover_s: int = 10  # consumer session timeout = share record lock time


@dataclass(frozen=True)
class Row:
    check: str
    design: str
    workers: int
    records: int
    handled: int  # jobs handled, repeats included
    repeated: int  # handled more than once
    lost: int  # never handled
    busy_workers: int
    seconds: float | None  # None: not timed (the replay checks count, they do not time)
    per_second: float | None
    note: str


# -- the worker (a child process) ------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker does, and where it writes: FOLDER/NAME.jobs, one line per job;
    it starts working once FOLDER/gate exists."""

    design: Design
    topic: str
    group: str
    work_ms: float
    batch: int
    folder: Path
    name: str
    session_ms: int
    crash_after: int | None = None


def work(spec: WorkerSpec, bootstrap: str) -> None:
    """Handle jobs until SIGTERM. With crash_after, the first worker of the run to have
    handled that many SIGKILLs itself before committing or acknowledging its batch."""
    stop = threading.Event()
    with (spec.folder / f"{spec.name}.jobs").open("a", buffering=1) as log, on_signals(stop.set):
        note = _Notebook(log, spec)
        if spec.design == "group":
            _work_in_group(bootstrap, spec, note, stop)
        else:
            _work_in_share_group(bootstrap, spec, note, stop)


class _Notebook:
    """A worker's record of the jobs it handled, the gate it waits at, its crash."""

    def __init__(self, log: TextIO, spec: WorkerSpec) -> None:
        self.log = log
        self.spec = spec
        self.handled = 0

    def ready(self) -> None:
        self.log.write("# ready\n")

    def open(self) -> bool:
        return (self.spec.folder / "gate").exists()

    def done(self, key: bytes | None, partition: int, offset: int, delivery: int) -> None:
        job = key.decode() if key else "?"
        self.log.write(f"{job} {partition} {offset} {delivery} {time.time():.6f}\n")
        self.handled += 1

    def before_commit(self) -> None:
        """Mark the end of a batch; the crash, if it is ours, comes here."""
        limit = self.spec.crash_after
        if limit is not None and self.handled >= limit and self._claim_crash():
            self.log.write("# crashing\n")
            os.kill(os.getpid(), signal.SIGKILL)
        self.log.write("# batch\n")

    def _claim_crash(self) -> bool:
        """Only one worker of the run crashes: the first to create the token."""
        try:
            with (self.spec.folder / "crashed").open("x") as token:
                token.write(self.spec.name)
        except FileExistsError:
            return False
        return True


def _work_in_group(bootstrap: str, spec: WorkerSpec, note: _Notebook,
                   stop: threading.Event) -> None:  # fmt: skip
    settings = {"session.timeout.ms": spec.session_ms, "heartbeat.interval.ms": 1000}
    consumer = Consumer(consumer_config(bootstrap, spec.group, **settings))
    held: list[Message] = []  # fetched before the gate opened

    def revoked(_: object, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        held[:] = [m for m in held if (m.topic(), m.partition()) not in gone]

    consumer.subscribe([spec.topic], on_assign=lambda *_: note.ready(), on_revoke=revoked)
    try:
        while not stop.is_set():
            messages = [m for m in consumer.consume(spec.batch, 0.2) if m.error() is None]
            if not note.open():
                held += messages
                continue
            messages, held[:] = held + messages, []
            for message in messages:
                time.sleep(spec.work_ms / 1000)
                note.done(message.key(), message.partition() or 0, message.offset() or 0, 1)
            if messages:
                note.before_commit()
                consumer.commit(offsets=_next_offsets(messages), asynchronous=False)
    finally:
        consumer.close()


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    """The offsets to commit after a batch: one past the last record of each partition."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        last[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in last.items()]


def _work_in_share_group(bootstrap: str, spec: WorkerSpec, note: _Notebook,
                         stop: threading.Event) -> None:  # fmt: skip
    with share_queue(bootstrap, spec.group, [spec.topic], spec.batch) as queue:
        records = queue.take(0.2)
        while not records and not note.open():  # joined once the group hands us some
            if stop.is_set():
                return
            records = queue.take(0.2)
        note.ready()
        while not note.open():
            if stop.wait(0.01):
                return
        while not stop.is_set():
            for message in records:
                time.sleep(spec.work_ms / 1000)
                note.done(message.key(), message.partition() or 0, message.offset() or 0,
                          delivery_count(message))  # fmt: skip
                queue.settle(message, "accept")
            if records:
                note.before_commit()  # the acknowledgements go with the next fetch
            records = queue.take(0.2)


# -- the runs ---------------------------------------------------------------------------


@dataclass
class Lines:
    """What the workers of one run wrote down."""

    jobs: list[tuple[str, str, float]]  # (job, worker, at)
    ready: set[str]
    unsettled: list[str]  # the crashed worker's last batch, never committed or acknowledged


def read_lines(folder: Path) -> Lines:
    lines = Lines([], set(), [])
    for path in sorted(folder.glob("*.jobs")):
        batch: list[str] = []
        for line in path.read_text().splitlines():
            if line == "# ready":
                lines.ready.add(path.stem)
            elif line == "# batch":
                batch = []
            elif line == "# crashing":
                lines.unsettled = batch
            elif line.count(" ") == 4 and line.endswith(tuple("0123456789")):
                job, *_, at = line.split()
                lines.jobs.append((job, path.stem, float(at)))
                batch.append(job)
    return lines


class Run:
    """One design, one fresh topic holding the jobs, one group, some workers."""

    def __init__(self, design: Design, setup: Setup, bootstrap: str, home: Path, name: str,
                 lock_ms: int = LONG_LOCK_MS) -> None:  # fmt: skip
        self.design = design
        self.setup = setup
        self.bootstrap = bootstrap
        self.lock_ms = lock_ms
        self.topic = f"ecom-compare-{name}-{design}-{int(time.time() * 1000)}"
        self.group = self.topic
        self.folder = home / self.topic
        self.children = Children()
        self.opened = 0.0
        self.groups = GroupAdmin(bootstrap)

    def __enter__(self) -> Run:
        admin = TopicAdmin(self.bootstrap)
        create = Change(self.topic, "create", "scratch", self.setup.partitions,
                        min(3, admin.broker_count()), {"min.insync.replicas": "1"})  # fmt: skip
        admin.execute(Plan([create], [], []))
        try:
            self.folder.mkdir(parents=True)
            self._configure(LONG_LOCK_MS)
            self._publish()
        except BaseException:
            admin.delete([self.topic])
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def _configure(self, lock_ms: int) -> None:
        if self.design == "share":
            settings = ShareGroupSettings("earliest", lock_ms, delivery_limit=5)
            configure_share_group(self.groups, self.group, settings)

    def __exit__(self, failure: type[BaseException] | None, *_: object) -> None:
        self.children.stop_all()
        TopicAdmin(self.bootstrap).delete([self.topic])
        for group, why in self.groups.delete([self.group], wait_s=GROUPS_GONE_S).items():
            LOG.warning("group %s left behind: %s", group, why)
        if failure is None:  # the workers' logs stay for a run that failed
            shutil.rmtree(self.folder, ignore_errors=True)

    def _publish(self) -> None:
        """The jobs, each in a batch of its own, as jobs enqueued one by one would be
        (a share group hands out whole batches, so this is what lets it spread them)."""
        with BytesProducer(self.bootstrap, **{"batch.num.messages": 1}) as producer:
            for n in range(self.setup.records):
                job = f"job-{n:06d}".encode()
                producer.produce(self.topic, job, job)

    def start(self, name: str, crash_after: int | None = None) -> None:
        args = ["compare", "queue-worker", self.design, "--topic", self.topic,
                "--group", self.group, "--work-ms", str(self.setup.work_ms),
                "--batch", str(self.setup.batch), "--folder", str(self.folder),
                "--name", name, "--session-ms", str(self.setup.failover_s * 1000),
                "--bootstrap", self.bootstrap]  # fmt: skip
        if crash_after is not None:
            args += ["--crash-after", str(crash_after)]
        self.children.start(Spec(name, tuple(args), log=self.folder / f"{name}.log"))

    def start_all(self, names: list[str], crash_after: int | None = None) -> None:
        """Start workers, wait until every one has joined, then open the gate."""
        for name in names:
            self.start(name, crash_after)
        self.wait_ready(names)
        if self.lock_ms != LONG_LOCK_MS:  # held records keep the long lock of before
            self._configure(self.lock_ms)
        self.opened = time.time()
        (self.folder / "gate").touch()

    def _check_alive(self) -> None:
        crashed = self.folder / "crashed"
        for name in self.children.running:
            if self.children.alive(name):
                continue
            if not (crashed.exists() and crashed.read_text() == name):
                raise ProcessFailed(f"worker {name} exited; see {self.folder / name}.log")

    def wait_ready(self, names: list[str]) -> None:
        def ready() -> bool:
            self._check_alive()
            return set(names) <= read_lines(self.folder).ready and self._settled(len(names))

        wait_until(ready, 120, f"{len(names)} {LABELS[self.design]} workers to join", 0.1)

    def _settled(self, workers: int) -> bool:
        """A consumer group has handed out every partition to its members."""
        if self.design == "share":
            return True
        info = self.groups.describe(self.group)
        assigned = sum(len(m.partitions) for m in info.members)
        return len(info.members) == workers and assigned == self.setup.partitions

    def handled(self) -> int:
        return len(read_lines(self.folder).jobs)

    def wait_handled(self, count: int, timeout: float = 600) -> Lines:
        """Wait until `count` jobs were handled, repeats included."""

        def done() -> bool:
            self._check_alive()
            return self.handled() >= count

        wait_until(done, timeout, f"{count} jobs through the {LABELS[self.design]}", 0.1)
        return read_lines(self.folder)

    def wait_done(self, timeout: float = 600) -> Lines:
        """Wait until every job was handled at least once, and a crashed worker's last
        batch (handled, never committed or acknowledged) a second time."""
        wanted = self.setup.records

        def done() -> bool:
            self._check_alive()
            lines = read_lines(self.folder)
            counts = Counter(job for job, _, _ in lines.jobs)
            again = all(counts[job] >= 2 for job in lines.unsettled)
            return len(counts) >= wanted and again

        wait_until(done, timeout, f"{wanted} jobs through the {LABELS[self.design]}", 0.1)
        return read_lines(self.folder)


def row(check: str, run: Run, workers: int, lines: Lines, note: str) -> Row:
    counts = Counter(job for job, _, _ in lines.jobs)
    last = max(at for _, _, at in lines.jobs)
    seconds = last - run.opened
    records = run.setup.records
    return Row(
        check, LABELS[run.design], workers, records, len(lines.jobs),
        sum(1 for c in counts.values() if c > 1), records - len(counts),
        len({w for _, w, _ in lines.jobs}), round(seconds, 2),
        round(records / seconds, 1) if seconds > 0 else 0.0, note,
    )  # fmt: skip


def throughput(design: Design, workers: int, setup: Setup, bootstrap: str, home: Path) -> Row:
    with Run(design, setup, bootstrap, home, f"tp{workers}") as run:
        run.start_all([f"w{n}" for n in range(workers)])
        lines = run.wait_done()
    note = f"{setup.partitions} partitions, {setup.work_ms:g} ms per job"
    return row("throughput", run, workers, lines, note)


def crash(design: Design, setup: Setup, bootstrap: str, home: Path) -> Row:
    lock_ms = setup.failover_s * 1000
    with Run(design, setup, bootstrap, home, "crash", lock_ms) as run:
        run.start_all([f"w{n}" for n in range(setup.crash_workers)], setup.crash_after)
        lines = run.wait_done()
    waits = "session timeout" if design == "group" else "record lock"
    settles = "committing" if design == "group" else "acknowledging"
    note = (f"a worker SIGKILLed after {setup.crash_after} jobs, before {settles}; "
            f"{waits} {setup.failover_s} s")  # fmt: skip
    return row("crash", run, setup.crash_workers, lines, note)


def replay(design: Design, setup: Setup, bootstrap: str, home: Path) -> list[Row]:
    """Every job done; then a new member joins; then the group is rewound."""
    with Run(design, setup, bootstrap, home, "replay") as run:
        run.start_all(["w0"])
        first = run.wait_done()
        run.children.stop("w0")
        rows = [row("replay: first pass", run, 1, first, "every job handled once")]
        run.start_all(["w1"])
        time.sleep(3)  # nothing is due: only watching for a while shows that
        rows.append(_replay_row(run, "replay: a new member joins", run.handled() - len(first.jobs),
                                "gets nothing: every job is done for the group"))  # fmt: skip
        run.children.stop("w1")
        before = run.handled()
        _rewind(run)
        run.start_all(["w2"])
        run.wait_handled(before + setup.records)
        how = ("offsets reset to the start; any consumer may also read any offset on its "
               "own, outside the group" if design == "group" else
               "the group's start offset reset (kafka-share-groups, group empty); no member "
               "can rewind alone")  # fmt: skip
        rows.append(_replay_row(run, "replay: the group is rewound", run.handled() - before, how))
    return rows


def _replay_row(run: Run, check: str, handled: int, note: str) -> Row:
    records = run.setup.records
    return Row(check, LABELS[run.design], 1, records, handled, 0, 0, int(handled > 0), None,
               None, note)  # fmt: skip


def _rewind(run: Run) -> None:
    if run.design == "group":
        offsets = {(run.topic, p): 0 for p in range(run.setup.partitions)}
        GroupAdmin(run.bootstrap).alter(run.group, offsets)
        return
    from bench.base import client_properties

    run_kafka_tool(
        "org.apache.kafka.tools.consumer.group.ShareGroupCommand",
        "--bootstrap-server", run.bootstrap, *client_properties(run.bootstrap, "--command-config"),
        "--reset-offsets", "--to-earliest", "--execute", "--group", run.group,
        "--topic", run.topic,
    )  # fmt: skip


def compare(setup: Setup, bootstrap: str, home: Path, checks: list[str],
            report: Report) -> list[Row]:  # fmt: skip
    rows: list[Row] = []
    for design in DESIGNS:
        if "throughput" in checks:
            for workers in setup.workers:
                report(f"throughput: {LABELS[design]}, {workers} worker(s) ...")
                rows.append(throughput(design, workers, setup, bootstrap, home))
        if "crash" in checks:
            report(f"crash: {LABELS[design]} ...")
            rows.append(crash(design, setup, bootstrap, home))
        if "replay" in checks:
            report(f"replay: {LABELS[design]} ...")
            rows += replay(design, setup, bootstrap, home)
    return rows


def table(rows: list[Row]) -> str:
    head = ("check", "design", "workers", "handled", "repeated", "lost", "busy", "s",
            "jobs/s", "note")  # fmt: skip
    body = [(r.check, r.design, r.workers, r.handled, r.repeated, r.lost, r.busy_workers,
             _figure(r.seconds), _figure(r.per_second), r.note) for r in rows]  # fmt: skip
    return output.table(head, body)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def as_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)
