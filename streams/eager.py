"""faust's consumer, handing each fetched record to the streams without four tasks.

faust's drain loop delivers every record it fetched with `wait_first(deliver(record),
suspend_flow.wait())`: mode makes four asyncio tasks (the delivery, the suspension, the
service's stop and crash), runs them, and cancels the three that lose. That was most of
what a worker spent per record it reads (py-spy, `ecom bench flow` at capacity: the
payment worker's own handler held the interpreter 10% of the time, faust's fetching and
delivery most of the rest), and every worker reads the whole orders topic.

A delivery mostly finishes in its first step: the stream's queue has room and the flow is
not suspended. `EagerWaitFirst` lets the event loop run what is already waiting (as
mode's tasks would wait their turn: a rebalance's suspension queued meanwhile still comes
first), then takes that first step itself, as the delivery's task would have taken it
first (mode schedules it ahead of the other three). Only a delivery that has to wait
gets the tasks, and then everything goes as before: it still loses to a suspension (a
rebalance) or a stop. This is what Python 3.12's eager tasks do.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine, Generator
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import Service, WaitArgT, WaitResults


class EagerWaitFirst(Service):
    """`wait_first` that takes the first coroutine's first step before making any task."""

    async def wait_first(self, *coros: WaitArgT, timeout: Any = None) -> WaitResults:
        first = coros[0] if coros else None
        # A plain type check, not the Coroutine ABC's: this runs for every record.
        if timeout is not None or not inspect.iscoroutine(first):
            return await super().wait_first(*coros, timeout=timeout)
        others = coros[1:]
        try:
            await asyncio.sleep(0)  # what is queued already goes first, as with mode's tasks
        except BaseException:
            _close(coros)
            raise
        try:
            waiting_on = first.send(None)
        except StopIteration as finished:
            _close(others)
            if self._stopped.is_set() or self._crashed.is_set():
                return WaitResults([], [], True)
            return WaitResults([first], [finished.value], False)
        except BaseException:
            _close(others)
            raise
        return await super().wait_first(resumed(first, waiting_on), *others)


def _close(coros: tuple[WaitArgT, ...]) -> None:
    """Close coroutines that will never run (no 'never awaited' warning)."""
    for coro in coros:
        if isinstance(coro, Coroutine):
            coro.close()


def resumed(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> asyncio.Task[Any]:
    """Return a task running a coroutine that took its first step already and now waits
    on `waiting_on` (the future it yielded, or None) to its end."""
    task = asyncio.ensure_future(_resume(coro, waiting_on))
    task.add_done_callback(lambda _: _cancel_if_waiting(coro))
    return task


def _cancel_if_waiting(coro: Coroutine[Any, Any, Any]) -> None:
    """A task cancelled before its first step never ran _resume, so nothing told the
    coroutine: tell it now, as its own task would have (an asyncio.Lock waiting in it
    passes its turn on only when it hears the cancellation)."""
    if inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED:  # it finished: the usual case
        return
    try:
        coro.throw(asyncio.CancelledError())
    except BaseException:  # noqa: BLE001 - it ended, by the cancellation or otherwise
        return
    coro.close()  # it swallowed the cancellation and waits again: nobody would resume it


async def _resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Run a coroutine that took its first step already, and now waits on `waiting_on`
    (the future it yielded, or None), to its end, inside the task that awaits this. The
    task waits on that future for it; a cancellation is thrown into it, as a task of its
    own would."""
    while True:
        try:
            await _Yield(waiting_on)
        except BaseException as error:  # noqa: BLE001 - the coroutine decides what it means
            try:
                waiting_on = coro.throw(error)
            except StopIteration as finished:
                return finished.value
            continue
        try:
            waiting_on = coro.send(None)
        except StopIteration as finished:
            return finished.value


class _Yield:
    """Hand a future a coroutine yielded on to the running task, as `await future`
    inside that coroutine would have."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, None]:
        yield self.value


class EagerConsumer(EagerWaitFirst, faust_aiokafka.Consumer):
    """faust's aiokafka consumer, delivering records eagerly."""


class EagerTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport, with the eager consumer."""

    Consumer = EagerConsumer


class EagerApp(faust.App):
    """A faust app whose consumer delivers records eagerly."""

    def _new_transport(self) -> EagerTransport:
        return EagerTransport(self.conf.broker_consumer, self)
