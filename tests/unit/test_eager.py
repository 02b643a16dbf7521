"""The eager wait_first of the workers' consumer (streams.eager) decides as mode's does,
and makes no task for a delivery that does not wait."""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from mode import Service

from streams.eager import EagerWaitFirst, _resume, resumed


class Plain(Service):
    """mode's own wait_first."""


class Eager(EagerWaitFirst):
    """The one under test."""


Scenario = Callable[[Service, list[str]], Coroutine[Any, Any, Any]]


async def _no_wait(service: Service, seen: list[str]) -> Any:
    async def deliver() -> int:
        seen.append("delivered")
        return 7

    suspended = asyncio.Event()
    return await service.wait_first(deliver(), suspended.wait())


async def _waits_then_finishes(service: Service, seen: list[str]) -> Any:
    loop = asyncio.get_running_loop()
    room = loop.create_future()

    async def deliver() -> int:
        seen.append("queue full")
        await room
        seen.append("delivered")
        return 8

    suspended = asyncio.Event()
    loop.call_later(0.01, room.set_result, None)
    return await service.wait_first(deliver(), suspended.wait())


async def _waits_and_is_suspended(service: Service, seen: list[str]) -> Any:
    loop = asyncio.get_running_loop()
    never = loop.create_future()

    async def deliver() -> None:
        seen.append("queue full")
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    suspended = asyncio.Event()
    loop.call_later(0.01, suspended.set)
    return await service.wait_first(deliver(), suspended.wait())


async def _fails_at_once(service: Service, seen: list[str]) -> Any:
    async def deliver() -> None:
        seen.append("failing")
        raise ValueError("bad record")

    return await service.wait_first(deliver(), asyncio.Event().wait())


async def _fails_after_waiting(service: Service, seen: list[str]) -> Any:
    loop = asyncio.get_running_loop()
    room = loop.create_future()
    loop.call_later(0.01, room.set_result, None)

    async def deliver() -> None:
        await room
        seen.append("failing")
        raise ValueError("bad record")

    return await service.wait_first(deliver(), asyncio.Event().wait())


async def _stopped(service: Service, seen: list[str]) -> Any:
    service._stopped.set()
    return await _no_wait(service, seen)


async def _suspended_already(service: Service, seen: list[str]) -> Any:
    async def deliver() -> int:
        seen.append("delivered")
        return 9

    suspended = asyncio.Event()
    suspended.set()
    return await service.wait_first(deliver(), suspended.wait())


async def _suspension_queued_first(service: Service, seen: list[str]) -> Any:
    """A rebalance queued its suspension before the call: faust's flow control stops the
    delivery in its first step, and the suspension wins."""
    flowing, suspended = asyncio.Event(), asyncio.Event()
    flowing.set()

    async def deliver() -> None:
        await flowing.wait()  # as faust's flow control does
        seen.append("delivered")

    def rebalance() -> None:
        flowing.clear()
        suspended.set()

    asyncio.get_running_loop().call_soon(rebalance)
    return await service.wait_first(deliver(), suspended.wait())


async def _stop_while_waiting(service: Service, seen: list[str]) -> Any:
    loop = asyncio.get_running_loop()

    async def deliver() -> None:
        seen.append("queue full")
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    loop.call_later(0.01, service._stopped.set)
    return await service.wait_first(deliver(), asyncio.Event().wait())


def _outcome(kind: type[Service], scenario: Scenario) -> tuple[Any, list[str], int]:
    """Run a scenario; return what wait_first returned (or raised), what the delivery saw,
    and how many tasks were made."""
    made = 0

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """Count the tasks made while the scenario runs (main's own is made before)."""
        nonlocal made
        made += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main() -> Any:
        asyncio.get_running_loop().set_task_factory(counting)
        seen: list[str] = []
        try:
            result = await scenario(kind(), seen)
        except ValueError as error:
            return f"raised {error}", seen, made
        # The delivery's answer and whether the service stopped: mode also lists a second
        # waitable that was done already (the drain loop reads neither).
        return (result.results[:1], result.stopped), seen, made

    return asyncio.run(main())  # type: ignore[no-any-return]


SCENARIOS = [_no_wait, _waits_then_finishes, _waits_and_is_suspended, _fails_at_once,
             _fails_after_waiting, _stopped, _suspended_already, _suspension_queued_first,
             _stop_while_waiting]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.strip("_"))
def test_the_same_outcome_as_mode(scenario: Scenario) -> None:
    plain, plain_seen, _ = _outcome(Plain, scenario)
    eager, eager_seen, _ = _outcome(Eager, scenario)
    assert eager == plain
    assert eager_seen == plain_seen


def test_a_delivery_that_does_not_wait_makes_no_task() -> None:
    answer, seen, tasks = _outcome(Eager, _no_wait)
    assert answer == ([7], False)
    assert seen == ["delivered"]
    assert tasks == 0
    assert _outcome(Plain, _no_wait)[2] == 4  # mode's: the delivery, suspension, stop, crash


def test_the_waits_never_started_are_closed() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _outcome(Eager, _no_wait)
        _outcome(Eager, _fails_at_once)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_a_resumed_coroutine_hears_a_cancellation_as_a_task_would() -> None:
    """The coroutine catches the cancellation, waits on something else and returns: the
    task running it returns that value, whether it runs it itself or through _resume."""

    async def patient(first: asyncio.Future[None], second: asyncio.Future[int]) -> str:
        try:
            await first
        except asyncio.CancelledError:
            return f"after cancel: {await second}"
        return "not cancelled"

    async def run(eager: bool) -> str:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        coro = patient(first, second)
        if eager:
            task = asyncio.ensure_future(_resume(coro, coro.send(None)))
        else:
            task = asyncio.ensure_future(coro)
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        second.set_result(5)
        return str(await task)

    assert asyncio.run(run(eager=True)) == asyncio.run(run(eager=False)) == "after cancel: 5"


def test_a_resuming_task_cancelled_before_its_first_step_still_tells_the_coroutine() -> None:
    """Otherwise a lock's waiter in it would keep its turn: the next acquire would hang."""

    async def main() -> bool:
        lock = asyncio.Lock()
        await lock.acquire()

        async def deliver() -> None:
            async with lock:
                pass

        coro = deliver()
        task = resumed(coro, coro.send(None))  # it waits for the lock
        task.cancel()  # before the task ever ran
        for _ in range(3):  # loop turns: the task ends, then its done callbacks run
            await asyncio.sleep(0)
        assert task.cancelled()
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # it heard it, and ended
        lock.release()
        await asyncio.wait_for(lock.acquire(), timeout=1.0)
        return True

    assert asyncio.run(main())
