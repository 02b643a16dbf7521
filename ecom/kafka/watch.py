"""Watch a cluster the way an operator's page does, read-only: every group's lag, the
dead letters parked, the newest records of every topic, and how long an entity takes
from a first event to a final one (an order from OrderCreated to its outcome), measured
between the records' log timestamps.

It assigns partitions (it never joins a group) and describes groups, so on a secure
cluster it needs only the `monitor` principal's READ and DESCRIBE. One background thread.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Message, TopicPartition

from ecom import metrics
from ecom.kafka.admin import Partition
from ecom.kafka.config import client_config
from ecom.kafka.groups import GroupAdmin

KEEP = 8  # newest records shown per topic
PENDING_MAX = 50_000  # started entities remembered while waiting for their final event
WINDOW_S = 10.0  # rates are averaged over this many seconds


@dataclass(frozen=True)
class Seen:
    """A record as the page shows it: where it is, its key, its type and its time."""

    topic: str
    partition: int
    offset: int
    key: str
    type: str
    at_ms: int


@dataclass(frozen=True)
class Journey:
    """What to time: records on one topic from a start type to one of the final types."""

    topic: str
    start: str
    finals: frozenset[str]


@dataclass
class View:
    """What the watch knows now (a copy is handed out)."""

    lag: dict[tuple[str, str], int] = field(default_factory=dict)  # (group, topic) -> lag
    dead_letters: dict[str, int] = field(default_factory=dict)  # topic -> records in it
    latest: dict[str, list[Seen]] = field(default_factory=dict)
    latencies_ms: list[int] = field(default_factory=list)  # newest journeys' times
    started_per_s: float = 0.0
    finished_per_s: float = 0.0
    error: str | None = None
    updated: float = 0.0


class Watch:
    """Follow the tails of topics and the lag of groups from a background thread."""

    def __init__(self, bootstrap: str, topics: Iterable[str], dead_letter_topics: Iterable[str],
                 groups: Iterable[str], journey: Journey, group_id: str,
                 interval: float = 1.0) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.topics = sorted(set(topics) | set(dead_letter_topics))
        self.dead_letter_topics = sorted(dead_letter_topics)
        self.groups = tuple(groups)  # names, or prefixes ending in *
        self.journey = journey
        self.group_id = group_id  # never joined; librdkafka wants one
        self.interval = interval
        self._view = View()
        self._latest: dict[str, deque[Seen]] = {t: deque(maxlen=KEEP) for t in self.topics}
        self._pending: OrderedDict[str, int] = OrderedDict()
        self._latencies: deque[int] = deque(maxlen=1000)
        self._arrivals: deque[tuple[float, bool]] = deque()  # (when, finished?)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tailing = threading.Event()  # set once the tails are assigned (or it failed)
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self, timeout: float = 30.0) -> Watch:
        """Start watching; return once the tails are assigned, so every record appended
        after this returns is seen (if Kafka does not answer, its error is the view's)."""
        self._thread.start()
        self._tailing.wait(timeout)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def view(self) -> View:
        """Return a copy of what the watch knows now."""
        with self._lock:
            now = time.monotonic()
            started = sum(1 for when, done in self._arrivals if not done and now - when <= WINDOW_S)
            finished = sum(1 for when, done in self._arrivals if done and now - when <= WINDOW_S)
            return View(
                dict(self._view.lag),
                dict(self._view.dead_letters),
                {topic: list(seen) for topic, seen in self._latest.items()},
                list(self._latencies),
                started / WINDOW_S,
                finished / WINDOW_S,
                self._view.error,
                self._view.updated,
            )

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as error:  # noqa: BLE001 - shown on the page; tried again
                with self._lock:
                    self._view.error = str(error).splitlines()[0][:300]
                self._tailing.set()
                self._stop.wait(self.interval * 5)

    def _follow(self) -> None:
        admin = GroupAdmin(self.bootstrap, timeout=10)
        settings = {"group.id": self.group_id, "enable.auto.commit": False}
        consumer = Consumer(client_config(self.bootstrap, **settings))
        try:
            ends = admin.log_ends(self.topics)
            tail = [TopicPartition(t, p, max(0, end - KEEP)) for (t, p), end in ends.items()]
            consumer.assign(tail)
            self._tailing.set()
            next_poll = 0.0
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=0.2):
                    if message.error() is None:
                        self._note(message)
                if time.monotonic() >= next_poll:
                    self._measure(admin)
                    next_poll = time.monotonic() + self.interval
        finally:
            consumer.close()

    def _note(self, message: Message) -> None:
        headers = dict(message.headers() or [])
        kind = _text(headers.get("ce_type") or "?").rsplit(".", 1)[-1]  # ecomstream.order.X
        key = _text(message.key() or "")
        _, at_ms = message.timestamp()
        seen = Seen(message.topic() or "", message.partition() or 0, message.offset() or 0,
                    key, kind, at_ms)  # fmt: skip
        with self._lock:
            self._latest[seen.topic].append(seen)
            if seen.topic == self.journey.topic:
                self._time_journey(seen)

    def _time_journey(self, seen: Seen) -> None:
        now = time.monotonic()
        if seen.type == self.journey.start and seen.key not in self._pending:
            self._pending[seen.key] = seen.at_ms
            if len(self._pending) > PENDING_MAX:
                self._pending.popitem(last=False)
            self._arrivals.append((now, False))
        elif seen.type in self.journey.finals and seen.key in self._pending:
            self._latencies.append(max(0, seen.at_ms - self._pending.pop(seen.key)))
            self._arrivals.append((now, True))
        while self._arrivals and now - self._arrivals[0][0] > WINDOW_S:
            self._arrivals.popleft()

    def _measure(self, admin: GroupAdmin) -> None:
        ends = admin.log_ends(self.topics)
        starts = admin.starts([tp for tp in ends if tp[0] in self.dead_letter_topics])
        dead = {t: 0 for t in self.dead_letter_topics}
        for (topic, partition), start in starts.items():
            dead[topic] += ends[(topic, partition)] - start
        lag: dict[tuple[str, str], int] = {}
        for group in self._our_groups(admin):
            for (topic, partition), behind in _behind(admin.committed(group), ends).items():
                lag[(group, topic)] = lag.get((group, topic), 0) + behind
                metrics.LAG.labels(group, topic, str(partition)).set(behind)
        with self._lock:
            self._view.lag = lag
            self._view.dead_letters = dead
            self._view.error = None
            self._view.updated = time.time()

    def _our_groups(self, admin: GroupAdmin) -> list[str]:
        names = [name for name, _, _ in admin.groups()]
        return [name for name in names if any(_matches(name, g) for g in self.groups)]


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _matches(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def _behind(committed: dict[Partition, int], ends: dict[Partition, int]) -> dict[Partition, int]:
    """Lag per partition the group has committed on (a partition never committed: all)."""
    topics = {topic for topic, _ in committed}
    return {tp: max(0, end - committed.get(tp, 0)) for tp, end in ends.items() if tp[0] in topics}


def percentile(values: list[int], share: float) -> int | None:
    """Return the value below which `share` of the values lie (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
