"""Confirmation mail: a work queue on a share group, where a queue is the right tool.

Every OrderConfirmed on the orders topic is one mail to send. The workers are members
of one share group, so there can be more of them than the topic has partitions, and a
send that fails is simply released: the record comes back, perhaps to another worker,
with its delivery count one higher. A record handed out more than `max_deliveries`
times, or one that cannot be decoded, goes to the dead-letter topic and is rejected;
every other event on the topic is accepted at once (it is not mail).

Delivery is at least once (a worker that dies after sending, before its
acknowledgement reached the broker, leaves the record to be handed out again), so the
outbox records each order's mail once: a second delivery finds it sent and accepts.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ecom import faults
from ecom.errors import EcomError, ProcessFailed, StoreError
from ecom.kafka import Admin, BytesProducer, DeadLetters, Failed, Message
from ecom.kafka.queue import (
    ShareGroupSettings,
    ShareQueue,
    Verdict,
    configure_share_group,
    delivery_count,
    share_queue,
)
from ecom.sqlite import ThreadLocalDb
from schemas import OrderConfirmed
from schemas.codec import Codec
from schemas.errors import DecodeError, InvalidEvent

log = logging.getLogger(__name__)
RETRY_PAUSE_S = 0.1  # times the delivery count, before a failed send is released
SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    order_id TEXT PRIMARY KEY, amount_minor INTEGER NOT NULL, currency TEXT NOT NULL,
    worker TEXT NOT NULL, delivery INTEGER NOT NULL, at TEXT NOT NULL,
    repeats INTEGER NOT NULL);
"""


class MailFailed(Exception):
    """The mail service did not take the mail this time."""


def fails(order_id: str, delivery: int, share: float) -> bool:
    """Tell whether the simulated mail service refuses this attempt (each attempt of an
    order draws anew, so a retry may succeed)."""
    digest = hashlib.sha256(f"{order_id}/{delivery}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class Outbox:
    """The mail that went out, one row per order, and how often its record came back
    after it was sent (SQLite, WAL; a connection per thread)."""

    def __init__(self, path: Path) -> None:
        self._file = ThreadLocalDb(path, SCHEMA, "the mail outbox")

    def _run(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return self._file.db.execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"the mail outbox {self._file.path} failed: {error}") from error

    def was_sent(self, order_id: str) -> bool:
        return bool(self._run("SELECT 1 FROM sent WHERE order_id = ?", (order_id,)))

    def record(self, event: OrderConfirmed, worker: str, delivery: int) -> None:
        self._run(
            "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?, 0)",
            (event.order_id, event.total.amount_minor, event.total.currency, worker,
             delivery, datetime.now(UTC).isoformat()),
        )  # fmt: skip

    def note_repeat(self, order_id: str) -> None:
        self._run("UPDATE sent SET repeats = repeats + 1 WHERE order_id = ?", (order_id,))


@dataclass
class Mailer:
    """The simulated mail service: it takes a while and sometimes says no."""

    latency_ms: float
    failure_share: float
    sleep: Callable[[float], None] = time.sleep

    def send(self, event: OrderConfirmed, delivery: int) -> None:
        if self.latency_ms:
            self.sleep(self.latency_ms / 1000)
        if fails(event.order_id, delivery, self.failure_share):
            raise MailFailed(f"the mail service refused order {event.order_id}'s mail")


@dataclass
class Tally:
    """What the workers did, for the log line and the tests."""

    sent: int = 0
    duplicates: int = 0
    released: int = 0
    dead: int = 0
    skipped: int = 0
    error: EcomError | None = None  # what stopped the first member that stopped
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def fail(self, error: EcomError) -> None:
        with self.lock:
            self.error = self.error or error


class NotificationWorker:
    """One member of the share group: take, send, settle, commit; again."""

    def __init__(
        self,
        name: str,
        queue: ShareQueue,
        mailer: Mailer,
        outbox: Outbox,
        dead_letters: DeadLetters,
        max_deliveries: int,
        tally: Tally,
    ) -> None:
        self.name = name
        self.queue = queue
        self.mailer = mailer
        self.outbox = outbox
        self.dead_letters = dead_letters
        self.max_deliveries = max_deliveries
        self.tally = tally
        self.codec = Codec()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(timeout=0.5)

    def step(self, timeout: float) -> None:
        """Settle one batch; dead letters are acknowledged before the rejections are."""
        records = self.queue.take(timeout)
        verdicts = [(message, self.handle(message)) for message in records]
        if not verdicts:
            return
        self.dead_letters.flush()
        for message, verdict in verdicts:
            self.queue.settle(message, verdict)
        faults.reach("notify-before-ack")
        self.queue.commit()

    def handle(self, message: Message) -> Verdict:
        value = message.value()
        kind = self.codec.event_type(value)
        if kind is not None and kind != OrderConfirmed.event_type:
            self.tally.add("skipped")
            return "accept"
        try:
            event = self.codec.decode(value)
        except (DecodeError, InvalidEvent) as error:
            return self.give_up(message, error)
        assert isinstance(event, OrderConfirmed)
        return self.mail(message, event)

    def mail(self, message: Message, event: OrderConfirmed) -> Verdict:
        delivery = delivery_count(message)
        if self.outbox.was_sent(event.order_id):
            self.outbox.note_repeat(event.order_id)
            self.tally.add("duplicates")
            return "accept"
        if delivery > self.max_deliveries:
            error = MailFailed(f"not sent in {self.max_deliveries} deliveries")
            return self.give_up(message, error)
        try:
            self.mailer.send(event, delivery)
        except MailFailed:
            self.tally.add("released")
            self.mailer.sleep(RETRY_PAUSE_S * delivery)  # a failing service gets a breather
            return "release"
        self.outbox.record(event, self.name, delivery)
        self.tally.add("sent")
        return "accept"

    def give_up(self, message: Message, error: Exception) -> Verdict:
        log.warning("dead letter from %s: %s", message.topic(), error)
        self.dead_letters.send(Failed.of(message), error)
        self.tally.add("dead")
        return "reject"


@dataclass(frozen=True)
class QueueSettings:
    """How the notifications workers run."""

    workers: int = 8
    max_deliveries: int = 3
    lock_ms: int = 30_000
    batch: int = 10


@dataclass(frozen=True)
class Crew:
    """What every notifications worker shares: where to read and park, how to run, the
    mail service and the outbox, and the signal that stops them all."""

    bootstrap: str
    group: str
    orders: str
    dead_letter_topic: str
    settings: QueueSettings
    mailer: Mailer
    outbox: Outbox
    stop: threading.Event


def run(crew: Crew) -> Tally:
    """Run the workers, one thread and one share-group member each, until stop is set.

    The group's own delivery limit is two above ours, so the delivery past our limit
    still reaches a worker (and goes to the dead letters) instead of being archived,
    even if that worker dies once on the way."""
    limits = ShareGroupSettings(
        start="earliest",
        lock_ms=crew.settings.lock_ms,
        delivery_limit=crew.settings.max_deliveries + 2,
    )
    configure_share_group(Admin(crew.bootstrap), crew.group, limits)
    tally = Tally()
    threads = [
        threading.Thread(target=_member, args=(crew, f"worker-{n}", tally), name=f"notify-{n}")
        for n in range(crew.settings.workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if tally.error is not None:
        raise tally.error
    return tally


def _member(crew: Crew, name: str, tally: Tally) -> None:
    """One worker, with its own producer: a dead letter's failure is its own to see."""
    try:
        with (
            BytesProducer(crew.bootstrap) as producer,
            share_queue(crew.bootstrap, crew.group, [crew.orders], crew.settings.batch) as queue,
        ):
            dead_letters = DeadLetters(producer, crew.dead_letter_topic, crew.group)
            worker = NotificationWorker(name, queue, crew.mailer, crew.outbox, dead_letters,
                                        crew.settings.max_deliveries, tally)  # fmt: skip
            worker.run(crew.stop)
    except EcomError as error:  # one member failing stops them all, the first one named
        tally.fail(error)
        crew.stop.set()
    except Exception as error:  # noqa: BLE001 - anything else, as one line too
        tally.fail(ProcessFailed(f"notifications {name} failed: {error!r}"))
        crew.stop.set()
