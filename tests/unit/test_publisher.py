"""The command API's Publisher: the answer is librdkafka's outcome, however late."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ecom.errors import DeliveryFailed
from ecom.kafka import Delivery
from producers.api import Publisher
from tests.samples import sample


class LateProducer:
    """Keeps the delivery callback; the test decides when the outcome comes."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.fatal: str | None = None

    def publish(self, _: object, callback: Any) -> None:
        self.callbacks.append(callback)

    def poll(self, timeout: float) -> None:
        time.sleep(timeout)

    def close(self) -> None:
        pass


def test_an_outcome_for_a_client_that_left_is_dropped_quietly() -> None:
    """A client that disconnects cancels its wait; the delivery report that comes
    afterwards made asyncio log InvalidStateError."""
    producer = LateProducer()
    publisher = Publisher(producer)  # type: ignore[arg-type]
    problems: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: problems.append(c))
        waiting = asyncio.create_task(publisher.publish(sample("UserCreated")))
        while not producer.callbacks:
            await asyncio.sleep(0.01)
        waiting.cancel()
        producer.callbacks[0](Delivery("users", 0, 1, "u-1"))
        await asyncio.sleep(0.1)  # the loop runs what the callback scheduled

    try:
        asyncio.run(scenario())
    finally:
        publisher.close()
    assert problems == []


def test_the_answer_waits_for_the_outcome() -> None:
    producer = LateProducer()
    publisher = Publisher(producer)  # type: ignore[arg-type]

    async def scenario() -> Delivery:
        waiting = asyncio.create_task(publisher.publish(sample("UserCreated")))
        while not producer.callbacks:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert not waiting.done()
        producer.callbacks[0](Delivery("users", 0, 7, "u-1"))
        return await waiting

    try:
        assert asyncio.run(scenario()).offset == 7
    finally:
        publisher.close()


def test_a_fatal_error_fails_the_commands_waiting_at_once() -> None:
    """A producer that hit a fatal error never reports on what it held: the commands
    waiting for it got their answer only after the delivery timeout (60 s)."""
    producer = LateProducer()
    publisher = Publisher(producer)  # type: ignore[arg-type]

    async def scenario() -> BaseException | None:
        waiting = asyncio.create_task(publisher.publish(sample("UserCreated")))
        while not producer.callbacks:
            await asyncio.sleep(0.01)
        producer.fatal = "Broker: Cluster authorization failed"
        done, _ = await asyncio.wait([waiting], timeout=5)
        assert done, "still waiting"
        return waiting.exception()

    try:
        failed = asyncio.run(scenario())
    finally:
        publisher.close()
    assert isinstance(failed, DeliveryFailed)
    assert str(failed) == "the producer hit a fatal error: Broker: Cluster authorization failed"
