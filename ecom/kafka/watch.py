"""Watch a cluster the way an operator's page does, read-only: every group's lag, the
dead letters parked, the newest records of every topic, and how long an entity takes
from a first event to a final one (an order from OrderCreated to its outcome), measured
between the records' log timestamps.

It assigns partitions (it never joins a group) and describes groups, so on a secure
cluster it needs only the `monitor` principal's READ and DESCRIBE. One background thread;
a failure is shown, never raised, and the watch tries again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from ecom import metrics
from ecom.kafka.admin import Partition
from ecom.kafka.config import client_config
from ecom.kafka.groups import GroupAdmin

KEEP = 8  # newest records shown per topic
PENDING_MAX = 50_000  # started entities remembered while waiting for their final event
WINDOW_S = 10.0  # rates are averaged over this many seconds
RETRY_S = 5.0


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
    dead_letters: dict[str, int | None] = field(default_factory=dict)  # None: not visible
    latest: dict[str, list[Seen]] = field(default_factory=dict)
    latencies_ms: list[int] = field(default_factory=list)  # newest journeys' times
    started_per_s: float = 0.0
    finished_per_s: float = 0.0
    error: str | None = None
    updated: float = 0.0  # when lag and dead letters were last measured (epoch s)
    tailing: bool = False  # every visible partition's tail is assigned


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
        self._positions: dict[Partition, int] = {}  # next offset to read, kept across retries
        self._new_from: dict[Partition, int] = {}  # the log end when first assigned
        self._pending: OrderedDict[str, int] = OrderedDict()
        self._latencies: deque[int] = deque(maxlen=1000)
        self._arrivals: deque[tuple[float, bool]] = deque()  # (when, finished?)
        self._exported: set[tuple[str, str, str]] = set()
        self._offsets = GroupOffsets(bootstrap)  # made anew on every retry of _follow
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self) -> Watch:
        """Start watching in the background (never waits for Kafka)."""
        self._thread.start()
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
                self._view.tailing,
            )

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as error:  # noqa: BLE001 - shown on the page; tried again
                self._failed("watching", error)
                self._stop.wait(RETRY_S)

    def _failed(self, what: str, error: BaseException | str) -> None:
        with self._lock:
            self._view.error = f"{what}: {str(error).splitlines()[0][:300]}"

    def _follow(self) -> None:
        admin = GroupAdmin(self.bootstrap, timeout=10)
        settings = {"group.id": self.group_id, "enable.auto.commit": False}
        consumer = Consumer(client_config(self.bootstrap, **settings))
        self._offsets = GroupOffsets(self.bootstrap)
        try:
            consumer.assign(self._tails(admin.log_ends(self.topics)))
            with self._lock:
                self._view.tailing = True
            next_measure = 0.0
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=0.2):
                    if (error := message.error()) is not None:
                        self._failed(f"reading {message.topic()}", error.str())
                    else:
                        self._note(message)
                if time.monotonic() >= next_measure:
                    self._measure_safely(admin)
                    next_measure = time.monotonic() + self.interval
        finally:
            with self._lock:
                self._view.tailing = False
            consumer.close()
            self._offsets.close()

    def _tails(self, ends: dict[Partition, int]) -> list[TopicPartition]:
        """Where to read each partition from: on from what was seen (after a retry), else
        the last few records; records at or past today's end are the new ones."""
        tails = []
        for (topic, partition), end in sorted(ends.items()):
            self._new_from.setdefault((topic, partition), end)
            start = self._positions.get((topic, partition), max(0, end - KEEP))
            tails.append(TopicPartition(topic, partition, start))
        return tails

    def _note(self, message: Message) -> None:
        headers = dict(message.headers() or [])
        kind = _text(headers.get("ce_type") or "?").rsplit(".", 1)[-1]  # ecomstream.order.X
        key = _text(message.key() or "")
        _, at_ms = message.timestamp()
        seen = Seen(message.topic() or "", message.partition() or 0, message.offset() or 0,
                    key, kind, at_ms)  # fmt: skip
        where = (seen.topic, seen.partition)
        with self._lock:
            self._positions[where] = seen.offset + 1
            self._latest[seen.topic].append(seen)
            # The tail read at start is history: only records new since then are timed.
            if seen.topic == self.journey.topic and seen.offset >= self._new_from.get(where, 0):
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

    def _measure_safely(self, admin: GroupAdmin) -> None:
        try:
            self._measure(admin)
        except Exception as error:  # noqa: BLE001 - the tail goes on; the next round retries
            self._failed("measuring lag", error)
        admin.admin.poll(0)  # serve the admin client's logs and error callbacks

    def _measure(self, admin: GroupAdmin) -> None:
        ends = admin.log_ends(self.topics)
        visible = {topic for topic, _ in ends}
        starts = admin.starts([tp for tp in ends if tp[0] in self.dead_letter_topics])
        dead: dict[str, int | None] = {
            t: 0 if t in visible else None for t in self.dead_letter_topics
        }
        for (topic, partition), start in starts.items():
            dead[topic] = (dead[topic] or 0) + ends[(topic, partition)] - start
        lag: dict[tuple[str, str], int] = {}
        exported = set()
        problems = []
        for group in self._our_groups(admin):
            try:
                committed = self._offsets.committed(group, list(ends))
            except KafkaException as error:  # this group's coordinator: the others go on
                problems.append(f"reading the offsets of {group}: {error}")
                lag |= {key: n for key, n in self._view.lag.items() if key[0] == group}
                exported |= {labels for labels in self._exported if labels[0] == group}
                continue
            for (topic, partition), behind in _behind(committed, ends).items():
                lag[(group, topic)] = lag.get((group, topic), 0) + behind
                labels = (group, topic, str(partition))
                metrics.LAG.labels(*labels).set(behind)
                exported.add(labels)
        for gone in self._exported - exported:  # a group or topic that went away
            metrics.LAG.remove(*gone)
        self._exported = exported
        invisible = sorted(set(self.topics) - visible)
        with self._lock:
            self._view.lag = lag
            self._view.dead_letters = dead
            if invisible:
                problems.append(f"not visible (missing, or no DESCRIBE): {', '.join(invisible)}")
            self._view.error = "; ".join(problems)[:300] or None
            self._view.updated = time.time()

    def _our_groups(self, admin: GroupAdmin) -> list[str]:
        names = [name for name, _, _ in admin.groups()]
        return [name for name in names if any(_matches(name, g) for g in self.groups)]


class GroupOffsets:
    """Groups' committed offsets, read the way a member reads its own (OffsetFetch through
    a consumer that never joins), not with the admin client: librdkafka's admin requests
    to a group coordinator can abort the whole process when a broker restarts
    (librdkafka issues #4605 and #3663: `eonce->refcnt > 0` failed), and the query API
    that shows this watch must outlive any broker. One client per group, kept."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._readers: dict[str, Consumer] = {}

    def committed(self, group: str, partitions: list[Partition]) -> dict[Partition, int]:
        reader = self._readers.get(group)
        if reader is None:
            settings = {"group.id": group, "enable.auto.commit": False}
            reader = self._readers[group] = Consumer(client_config(self.bootstrap, **settings))
        asked = [TopicPartition(topic, partition) for topic, partition in partitions]
        try:
            found = reader.committed(asked, timeout=10)
        finally:
            reader.poll(0)  # serve its logs and error callbacks (it never subscribes)
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in found
            if tp.error is None and tp.offset >= 0
        }

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _matches(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def _behind(committed: dict[Partition, int], ends: dict[Partition, int]) -> dict[Partition, int]:
    """Lag per partition of the topics a group has committed on (a partition of such a
    topic without a commit counts from its first offset, 0 here: nothing is deleted)."""
    topics = {topic for topic, _ in committed}
    return {tp: max(0, end - committed.get(tp, 0)) for tp, end in ends.items() if tp[0] in topics}


def percentile(values: list[int], share: float) -> int | None:
    """Return the value below which `share` of the values lie (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
