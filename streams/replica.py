"""Live replicas of reference topics a worker needs whole: every price, product category
and tax rate for pricing, every user id for the order worker. A background reader
(ecom.kafka.TopicReader: all partitions, from the start, no consumer group) folds them
into memory.

A replica can say how current it is: `current_at(t)` returns once it holds everything
published up to t (it reads the log ends, then waits until it has read up to them). The
workers decide as of an event's time, so a price published just before an order counts,
and the same order is decided the same way when it is handled again.

faust's GlobalTable would do this job, but it has open bugs around recovery and naming
(faust-streaming issues #283 and #296); a plain reader of two topics is simpler to trust.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Generic, TypeVar

from ecom.errors import DecodeError, InvalidEvent, KafkaUnavailable
from ecom.kafka import Message, TopicReader
from ecom.topology import Topology
from schemas import (
    Codec,
    Event,
    PriceChanged,
    ProductCreated,
    ProductUpdated,
    TaxRateChanged,
    UserCreated,
)
from schemas.rules.pricing import Price

LOG = logging.getLogger("ecom.streams")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RETRY_S = 1.0
T = TypeVar("T")
CURRENT_WAIT_S = 10.0


class Replica:
    """Whole topics folded into memory by a background reader."""

    def __init__(self, topology: Topology, bootstrap: str, topics: list[str], name: str) -> None:
        self._codec = Codec()
        names = [topology.topic(t).name for t in topics]
        self._reader = TopicReader(bootstrap, names, self._read, name=name)
        self._current_as_of = EPOCH
        self._check: asyncio.Future[None] | None = None
        self._started = asyncio.Event()

    async def start(self) -> None:
        """Start reading (retrying while the brokers cannot be reached)."""
        while True:
            try:
                await asyncio.to_thread(self._reader.start)
                break
            except KafkaUnavailable as error:
                LOG.warning("%s: %s; trying again", self._reader.topics, error)
                self._reader = self._reader.fresh()
                await asyncio.sleep(RETRY_S)
        self._started.set()

    def stop(self) -> None:
        self._reader.stop()

    async def current_at(self, at: datetime) -> None:
        """Return once the replica holds everything published up to `at`."""
        await self._started.wait()
        while at > self._current_as_of:
            if self._check is None or self._check.done():
                self._check = asyncio.ensure_future(self._catch_up())
            await asyncio.shield(self._check)

    async def _catch_up(self) -> None:
        started = datetime.now(UTC)
        try:
            current = await asyncio.to_thread(self._reader.wait_until_current, CURRENT_WAIT_S)
        except KafkaUnavailable as error:  # the brokers are away: decide nothing meanwhile
            LOG.warning("%s: %s; trying again", self._reader.topics, error)
            current = False
        if current:
            self._current_as_of = started
        else:
            await asyncio.sleep(RETRY_S)

    def _read(self, message: Message) -> None:
        try:
            event = self._codec.decode(message.value())
        except (DecodeError, InvalidEvent):
            return  # the projections' DLQ reports bad records; replicas skip them
        self.apply(event)

    def apply(self, event: Event) -> None:
        raise NotImplementedError


class Users(Replica):
    """Every user a UserCreated named, and since when."""

    def __init__(self, topology: Topology, bootstrap: str) -> None:
        super().__init__(topology, bootstrap, ["users"], "users-replica")
        self.since: dict[str, datetime] = {}

    def knows(self, user_id: str, at: datetime) -> bool:
        """Tell whether the user existed at `at` (so the answer never changes later)."""
        created = self.since.get(user_id)
        return created is not None and created <= at

    def apply(self, event: Event) -> None:
        if isinstance(event, UserCreated):
            self.since.setdefault(event.user_id, event.occurred_at)


class History(Generic[T]):
    """Values by time: the one in force at any moment. (One list, so a reader on the
    event loop never sees a half-made insert by the reader thread.)"""

    def __init__(self) -> None:
        self._items: list[tuple[datetime, T]] = []

    def add(self, at: datetime, value: T) -> None:
        index = bisect.bisect_right(self._items, at, key=_time)
        self._items.insert(index, (at, value))

    def at(self, at: datetime) -> T | None:
        index = bisect.bisect_right(self._items, at, key=_time)
        return self._items[index - 1][1] if index else None


def _time(item: tuple[datetime, object]) -> datetime:
    return item[0]


class Reference(Replica):
    """Prices, categories and tax rates, each with its history: a PriceBook as of any time."""

    def __init__(self, topology: Topology, bootstrap: str) -> None:
        super().__init__(topology, bootstrap, ["pricing", "products"], "reference-data")
        self.prices: defaultdict[str, History[Price]] = defaultdict(History)
        self.categories: defaultdict[str, History[str]] = defaultdict(History)
        self.rates: defaultdict[tuple[str, str], History[int]] = defaultdict(History)

    def price(self, product_id: str, at: datetime) -> Price | None:
        return self.prices[product_id].at(at) if product_id in self.prices else None

    def category(self, product_id: str, at: datetime) -> str | None:
        return self.categories[product_id].at(at) if product_id in self.categories else None

    def tax_rate(self, country: str, category: str, at: datetime) -> int | None:
        key = (country, category)
        return self.rates[key].at(at) if key in self.rates else None

    def apply(self, event: Event) -> None:
        at = event.occurred_at
        if isinstance(event, PriceChanged):
            price = Price(event.price.amount_minor, event.price.currency)
            self.prices[event.product_id].add(at, price)
        elif isinstance(event, TaxRateChanged):
            self.rates[(event.country, event.category)].add(at, event.rate_bp)
        elif isinstance(event, (ProductCreated, ProductUpdated)) and event.category is not None:
            self.categories[event.product_id].add(at, event.category)
