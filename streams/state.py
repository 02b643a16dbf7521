"""A worker's state: typed rows by key, per source partition, in memory, persisted in a
compacted changelog topic of its own (one changelog partition per source partition).

Beside its rows, every partition keeps a cursor per source topic: the next offset to
apply. A record below its cursor was applied already (delivered again after a restart
or a rebalance) and is skipped; a record above it means records were skipped on the way,
and the flow seeks back (see streams.flow). Rows change only in memory; the committer
(streams.checkpoint) writes what changed, after the outputs it reflects. A partition's
state is read back from the changelog when the partition is assigned, and dropped when
it goes to another worker.

A checkpoint's changelog records are many records, and a crash can persist some of them
and not the rest. Two rules keep that safe: a partition's cursor is written after its
rows (the changelog partition keeps their order, so a persisted cursor means persisted
rows), and every row carries the offset of the last record that changed it, per source
topic (so a record handled again on a row that already holds its effect is skipped).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, Self, TypeVar

import orjson

from ecom.errors import KafkaRefused, KafkaUnavailable
from ecom.kafka import BytesProducer, Message, OutcomeCallback, read_to_end

LOG = logging.getLogger("ecom.streams")
LOAD_WITHIN_S = 120.0  # how long a partition's state may wait for the cluster to answer
LOAD_RETRY_S = 1.0
LOOK_AGAIN = timedelta(seconds=1)  # a finished row not yet sealed: sealed within a batch
CURSOR = b"\x00next:"  # cursor keys; never an entity id (ids are [A-Za-z0-9._:@-])


class Row(Protocol):
    """A state row: frozen, and plain JSON on the changelog."""

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self: ...


R = TypeVar("R", bound=Row)


@dataclass(frozen=True)
class Change:
    """One changelog record: a row's new value, or None to delete it (a tombstone)."""

    partition: int
    key: bytes
    value: bytes | None


class Table(Generic[R]):
    """One worker's rows and cursors, by source partition."""

    def __init__(self, row_type: type[R], changelog: str, bootstrap: str) -> None:
        self.row_type = row_type
        self.changelog = changelog
        self.bootstrap = bootstrap
        self.rows: dict[int, dict[bytes, R]] = {}
        self.cursors: dict[int, dict[str, int]] = {}
        self.marks: dict[int, dict[bytes, dict[str, int]]] = {}  # row -> topic -> offset
        self.handling: tuple[str, int] | None = None  # the record being handled, if any
        self._dirty: dict[tuple[int, bytes], R | None] = {}
        self._loads: dict[int, asyncio.Future[None]] = {}
        self._loaded: dict[int, int] = {}  # partition -> times loaded
        self._revoked: set[int] = set()  # taken from us, not given back since

    # -- rows ------------------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> R | None:
        return self.rows[partition].get(key)

    def put(self, partition: int, key: bytes, row: R) -> None:
        """Set a row; stamped with the record being handled, if any."""
        self.rows[partition][key] = row
        self._dirty[(partition, key)] = row
        if self.handling is not None:
            topic, offset = self.handling
            self.marks[partition].setdefault(key, {})[topic] = offset

    def delete(self, partition: int, key: bytes) -> None:
        if self.rows[partition].pop(key, None) is not None:
            self._dirty[(partition, key)] = None
            self.marks[partition].pop(key, None)

    def unsealed(self, partition: int, key: bytes) -> bool:
        """Tell whether a row changed since the last take: no checkpoint holds it yet."""
        return self._dirty.get((partition, key)) is not None

    def holds(self, partition: int, key: bytes, topic: str, offset: int) -> bool:
        """Tell whether a row already holds the effect of the record at topic/offset."""
        return self.marks[partition].get(key, {}).get(topic, -1) >= offset

    def items(self) -> Iterator[tuple[int, bytes, R]]:
        """Every row of every loaded partition."""
        for partition, rows in list(self.rows.items()):
            for key, row in list(rows.items()):
                yield partition, key, row

    def cursor(self, partition: int, topic: str) -> int | None:
        """The next offset of topic to apply in this partition (None: nothing yet)."""
        return self.cursors[partition].get(topic)

    def advance(self, partition: int, topic: str, next_offset: int) -> None:
        self.cursors[partition][topic] = next_offset
        self._dirty[(partition, CURSOR + topic.encode())] = None  # marker: write the cursor

    def take_changes(self) -> list[Change]:
        """Return what changed since the last call, as changelog records."""
        dirty, self._dirty = self._dirty, {}
        rows, cursors = [], []
        for (partition, key), row in dirty.items():
            if partition not in self.rows:
                continue  # the partition went to another worker meanwhile
            if key.startswith(CURSOR):
                topic = key.removeprefix(CURSOR).decode()
                value = orjson.dumps({"next": self.cursors[partition][topic]})
                cursors.append(Change(partition, key, value))
            elif row is None:
                rows.append(Change(partition, key, None))
            else:
                marks = self.marks[partition].get(key, {})
                rows.append(Change(partition, key, _dump(row, marks)))
        return rows + cursors  # cursors last: see the module's docstring

    def take_deletions(self) -> list[Change]:
        """Return only the rows deleted since the last take (tombstones). Retention deletes
        no row whose last state is unsealed, and checkpoints commit in the order sealed
        (streams.checkpoint): a tombstone never lands ahead of the row's last state."""
        gone = [
            (partition, key)
            for (partition, key), row in self._dirty.items()
            if row is None and not key.startswith(CURSOR) and partition in self.rows
        ]
        for where in gone:
            del self._dirty[where]
        return [Change(partition, key, None) for partition, key in gone]

    def write(self, producer: BytesProducer, change: Change, on_outcome: OutcomeCallback) -> None:
        """Send one change to the changelog, on the source partition's own partition."""
        producer.produce(
            self.changelog, change.value, change.key, partition=change.partition,
            on_outcome=on_outcome,
        )  # fmt: skip

    # -- assignment ----------------------------------------------------------------------

    def assign(self, partitions: set[int]) -> None:
        """Keep the partitions given, drop the others; start loading the new ones."""
        gone = set(self._loads) - partitions
        self._revoked = (self._revoked | gone) - partitions
        for partition in gone:
            self._loads.pop(partition).cancel()
            self.rows.pop(partition, None)
            self.cursors.pop(partition, None)
            self.marks.pop(partition, None)
        # Unsealed changes of a partition that went are not ours to write any more, even
        # if it comes back (it is loaded afresh then).
        self._dirty = {where: row for where, row in self._dirty.items() if where[0] not in gone}
        for partition in partitions - set(self._loads):
            self._loads[partition] = asyncio.ensure_future(self._load(partition))

    def close(self) -> None:
        """Stop the loads still running (the agent is stopping). They adopted nothing, so
        a partition whose load stopped is loaded afresh if it is asked for again."""
        for partition, load in list(self._loads.items()):
            if not load.done():
                load.cancel()
                del self._loads[partition]

    async def ready(self, partition: int) -> bool:
        """Wait until a partition's state is loaded (loading it if nobody asked yet).
        Return False if the partition was taken from us, before or while it loaded: its
        records are its next owner's to handle, and the agent goes on."""
        while partition not in self._revoked:
            if partition not in self._loads:
                self._loads[partition] = asyncio.ensure_future(self._load(partition))
            load = self._loads[partition]
            try:
                await asyncio.shield(load)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not load.cancelled() or (task is not None and task.cancelling()):
                    raise  # our caller is stopping
            # assign() may have run between the load's end and our waking up
            if self._loads.get(partition) is load and partition not in self._revoked:
                return True
        return False

    def loaded(self) -> list[int]:
        """The partitions whose state is in memory."""
        return sorted(p for p in self.rows if p in self.cursors)

    def loaded_since(self, seen: dict[int, int]) -> list[int]:
        """Return the partitions loaded since `seen` was last passed here, and update it. A
        partition that went and came back in between counts: its rows are new."""
        loads = {p: self._loaded[p] for p in self.loaded()}
        fresh = [p for p, load in loads.items() if seen.get(p) != load]
        seen.clear()
        seen.update(loads)
        return fresh

    def adopt(
        self,
        partition: int,
        rows: dict[bytes, R],
        cursors: dict[str, int],
        marks: dict[bytes, dict[str, int]] | None = None,
    ) -> None:
        """Take a partition's state as read from the changelog."""
        self.rows[partition] = rows
        self.cursors[partition] = cursors
        self.marks[partition] = marks or {}
        self._loaded[partition] = self._loaded.get(partition, 0) + 1

    async def _load(self, partition: int) -> None:
        """Read a partition's state from its changelog. A cluster that does not answer
        for a while (a broker restarting) is waited for, up to LOAD_WITHIN_S, each try
        afresh; then, or at once if the cluster refused us, the error fails the agent."""
        deadline = time.monotonic() + LOAD_WITHIN_S
        while True:
            rows: dict[bytes, R] = {}
            cursors: dict[str, int] = {}
            marks: dict[bytes, dict[str, int]] = {}
            apply = _reader(self.row_type, rows, cursors, marks)
            try:
                await asyncio.to_thread(
                    read_to_end, self.bootstrap, self.changelog, [partition], apply
                )
                break
            except KafkaRefused:
                raise
            except KafkaUnavailable as error:
                if time.monotonic() > deadline:
                    raise
                LOG.warning("%s[%d]: cannot load yet, trying again: %s",
                            self.changelog, partition, error)  # fmt: skip
                await asyncio.sleep(LOAD_RETRY_S)
        self.adopt(partition, rows, cursors, marks)
        LOG.info("%s[%d]: loaded %d row(s)", self.changelog, partition, len(rows))


def write_start_cursors(
    producer: BytesProducer, changelog: str, offsets: dict[tuple[str, int], int]
) -> None:
    """Start an emptied state at these source offsets (`ecom offsets reset --wipe-state`):
    a partition without a cursor would start at its log's first record instead."""
    for (topic, partition), offset in sorted(offsets.items()):
        key = CURSOR + topic.encode()
        producer.produce(changelog, orjson.dumps({"next": offset}), key, partition=partition)
    producer.flush()


def _reader(
    row_type: type[R],
    rows: dict[bytes, R],
    cursors: dict[str, int],
    marks: dict[bytes, dict[str, int]],
) -> Callable[[Message], None]:
    def apply(message: Message) -> None:
        key, value = message.key() or b"", message.value()
        if key.startswith(CURSOR):
            topic = key.removeprefix(CURSOR).decode()
            if value is None:  # a wiped state (ecom offsets reset --wipe-state)
                cursors.pop(topic, None)
            else:
                cursors[topic] = orjson.loads(value)["next"]
        elif value is None:
            rows.pop(key, None)
            marks.pop(key, None)
        else:
            stored = orjson.loads(value)
            rows[key] = row_type.from_json(stored["row"])
            marks[key] = stored["applied"]

    return apply


def _dump(row: Row, marks: dict[str, int]) -> bytes:
    return orjson.dumps({"row": row.to_json(), "applied": marks})


class Retention(Generic[R]):
    """Forget finished rows a while after they finished (tombstones on the changelog),
    so a worker's state holds what is in progress plus a grace period, not all history."""

    def __init__(
        self,
        table: Table[R],
        keep: timedelta,
        finished_at: Callable[[R], datetime | None],
    ) -> None:
        self.table = table
        self.keep = keep
        self.finished_at = finished_at
        self._due: list[tuple[datetime, int, bytes]] = []
        self._indexed: dict[int, int] = {}  # partition -> the load its rows were noted from

    def note(self, partition: int, key: bytes, row: R) -> None:
        """Call when a row may have finished."""
        finished = self.finished_at(row)
        if finished is not None:
            heapq.heappush(self._due, (finished + self.keep, partition, key))

    def tick(self, now: datetime) -> int:
        """Delete the rows due; return how many went."""
        for partition in self.table.loaded_since(self._indexed):
            for key, row in list(self.table.rows[partition].items()):
                self.note(partition, key, row)
        gone = 0
        while self._due and self._due[0][0] <= now:
            _, partition, key = heapq.heappop(self._due)
            found = self.table.rows.get(partition, {}).get(key)
            finished = None if found is None else self.finished_at(found)
            if finished is None or finished + self.keep > now:
                continue
            if self.table.unsealed(partition, key):
                # Its final state (and what it sent) is in no checkpoint yet: a tombstone
                # now would be persisted first, and a crash would lose that decision.
                heapq.heappush(self._due, (now + LOOK_AGAIN, partition, key))
                continue
            self.table.delete(partition, key)
            gone += 1
        return gone
