"""One object owns the commit order of a worker, the way quix-streams' Checkpoint does:

    1. a checkpoint's outputs acknowledged by Kafka (acks=all),
    2. then the state rows it changed persisted in the changelog (acknowledged too),
    3. then its input records acked to faust, which commits their offsets.

The agent seals a checkpoint per batch (at most BATCH records or ~50 ms) and goes on
deciding the next one while earlier checkpoints' sends are in flight: the in-memory
state runs ahead of what is persisted, and what is persisted never runs ahead of the
outputs it reflects. Checkpoints commit in the order they were sealed.
A crash anywhere replays, from the last committed offsets, records whose outputs may be
out already: decisions are deterministic and event ids derived, so they come out the
same, and the next worker drops the duplicates.

Checkpoints sealed while the committer waits for Kafka commit together (a group commit):
one changelog write holds each row's and cursor's latest value, and one ack covers their
records. The more the agent runs ahead, the fewer requests the brokers serve per record.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecom.errors import DeliveryFailed
from ecom.kafka import BytesProducer, Outcome
from streams.state import CURSOR, Change, Table

LOG = logging.getLogger("ecom.streams")
MAX_IN_FLIGHT = 8  # sealed checkpoints not yet committed before the agent waits too


class Deliveries:
    """The deliveries of one set of records; done once every one is acknowledged.

    Delivery reports arrive on whichever thread serves the producer; the result is handed
    to the event loop thread-safely."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending = 0
        self._sealed = False
        self.failure: DeliveryFailed | None = None
        self.done: asyncio.Future[None] = loop.create_future()

    def track(self) -> Callable[[Outcome], None]:
        """Count one more record; return the callback for its delivery report."""
        with self._lock:
            self._pending += 1
        return self._report

    def _report(self, outcome: Outcome) -> None:
        with self._lock:
            self._pending -= 1
            if isinstance(outcome, DeliveryFailed) and self.failure is None:
                self.failure = outcome
            finished = self._sealed and self._pending == 0
        if finished:
            self._loop.call_soon_threadsafe(self._resolve)

    def seal(self) -> None:
        """No more records will be tracked."""
        with self._lock:
            self._sealed = True
            finished = self._pending == 0
        if finished:
            self._resolve()

    def _resolve(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    async def wait(self) -> None:
        """Wait until every tracked record is acknowledged; raise if one was not."""
        await self.done
        if self.failure is not None:
            raise self.failure


@dataclass
class Checkpoint:
    """A batch's work: the records it read, what it sent, what state it changed."""

    outputs: Deliveries
    records: list[Any] = field(default_factory=list)  # faust events, acked last
    changes: list[Change] = field(default_factory=list)
    sealed_at: float = 0.0


class Committer:
    """Commits sealed checkpoints in order: outputs, then state, then input offsets."""

    def __init__(
        self,
        producer: BytesProducer,
        table: Table[Any],
        ack: Callable[[Sequence[Any]], Awaitable[None]],
        on_commit: Callable[[Checkpoint, float], None] | None = None,
    ) -> None:
        self.producer = producer
        self.table = table
        self.ack = ack
        self.on_commit = on_commit
        self._queue: asyncio.Queue[Checkpoint] = asyncio.Queue()
        # Room counts every checkpoint not yet committed, in a group being committed too.
        self._room = asyncio.Semaphore(MAX_IN_FLIGHT)
        # Hand-overs take turns (asyncio.Lock is first come, first served): a caller that
        # finds room must not overtake one already waiting for room, or the retention
        # timer's tombstone could commit before the row it deletes.
        self._turn = asyncio.Lock()
        self._held: Checkpoint | None = None  # taken from the queue; leads the next group
        self.committed = 0

    async def submit(self, checkpoint: Checkpoint) -> None:
        """Hand over a sealed checkpoint (waits while too many are in flight). Call it in
        the step that took the checkpoint's changes: checkpoints then commit in the order
        they were sealed."""
        checkpoint.sealed_at = time.monotonic()
        async with self._turn:
            await self._room.acquire()
            self._queue.put_nowait(checkpoint)

    async def run(self) -> None:
        """Commit checkpoints until cancelled; a failed delivery raises DeliveryFailed."""
        loop = asyncio.get_running_loop()
        while True:
            group = await self._next_group()
            state = Deliveries(loop)
            for change in merged(group):
                self.table.write(self.producer, change, state.track())
            state.seal()
            await state.wait()
            await self.ack([record for checkpoint in group for record in checkpoint.records])
            now = time.monotonic()
            for checkpoint in group:
                self.committed += 1
                if self.on_commit is not None:
                    self.on_commit(checkpoint, now - checkpoint.sealed_at)
                self._queue.task_done()
                self._room.release()

    async def _next_group(self) -> list[Checkpoint]:
        """Return the next checkpoint and those sealed after it that are waiting already,
        every one's outputs acknowledged. Tombstones only ever lead a group: merged behind
        a checkpoint, one could be persisted ahead of its cursors, and the records behind
        them would be handled again without the row they deleted."""
        first = self._held or await self._queue.get()
        self._held = None
        await first.outputs.wait()  # meanwhile the agent seals more
        group = [first]
        while not self._queue.empty():
            checkpoint = self._queue.get_nowait()
            if _deletes(checkpoint):
                self._held = checkpoint
                break
            group.append(checkpoint)
        for checkpoint in group[1:]:
            await checkpoint.outputs.wait()
        return group

    async def drain(self) -> None:
        """Wait until every checkpoint handed over so far is committed."""
        await self._queue.join()


def merged(group: Sequence[Checkpoint]) -> list[Change]:
    """Return the changelog records of a group of checkpoints: each key's latest value,
    rows first and cursors last (as within one checkpoint: see streams.state)."""
    latest: dict[tuple[int, bytes], Change] = {}
    for checkpoint in group:
        for change in checkpoint.changes:
            latest[(change.partition, change.key)] = change
    rows = [change for change in latest.values() if not change.key.startswith(CURSOR)]
    cursors = [change for change in latest.values() if change.key.startswith(CURSOR)]
    return rows + cursors


def _deletes(checkpoint: Checkpoint) -> bool:
    return any(change.value is None for change in checkpoint.changes)
