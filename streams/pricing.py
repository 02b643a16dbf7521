"""Pricing worker: prices each order with the prices and tax rates in force.

For every OrderCreated it looks up each line's price (in the order's currency), the
product's tax category, and the tax rate for the shipping country and that category,
as they were when the order was created, and publishes OrderPriced with net, tax and
total per line and for the order (tax is rounded half up per line, in minor units). This
is the "compute taxes" step of the old synchronous design. It first makes sure its
replica of the pricing and products topics holds everything published up to the
order's creation (a price published just before the order counts); what cannot be
priced (a missing price or rate, an amount too large) is OrderPricingFailed, a business
outcome, never a crash. Pricing the same order again gives byte-identical events.

State: the `priced` table, per order the id of the OrderCreated it priced: another
OrderCreated with the same order id is ignored (logged and counted). Rows go after
ECOM_FLOW_RETENTION_S once the order is final.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Self

import faust
from faust.types import StreamT

from schemas import Event, OrderCreated, OrderPriced, OrderPricingFailed
from schemas.errors import NotPriceable
from schemas.rules.order import FINAL_EVENT_TYPES, FINAL_EVENTS
from schemas.rules.pricing import PriceBook, price_order
from streams.flow import Flow, Input, derived_id
from streams.replica import Reference
from streams.state import Retention

LOG = logging.getLogger("ecom.streams")
TICK_S = 1.0
WANTED = frozenset({"OrderCreated"}) | FINAL_EVENT_TYPES


@dataclass(frozen=True)
class Priced:
    """An order the worker priced: the OrderCreated it priced, and when the order ended."""

    cause: str
    finished_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        finished = self.finished_at.isoformat() if self.finished_at else None
        return {"cause": self.cause, "finished_at": finished}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        finished = data["finished_at"]
        return cls(data["cause"], datetime.fromisoformat(finished) if finished else None)


def price_or_fail(book: PriceBook, order: OrderCreated) -> OrderPriced | OrderPricingFailed:
    """Price an order as of its creation, or say why it cannot be."""
    try:
        return price_order(book, order, derived_id(order.event_id, "priced"))
    except NotPriceable as error:
        return OrderPricingFailed(
            event_id=derived_id(order.event_id, "pricing-failed"),
            occurred_at=order.occurred_at,
            order_id=order.order_id,
            reason=str(error),
        )


class Pricing:
    """The pricing agent's handling and its table's clean-up."""

    def __init__(self, flow: Flow[Priced], reference: Reference, retention: timedelta) -> None:
        self.flow = flow
        self.reference = reference
        self.retention = Retention(flow.table, retention, _finished_at)

    async def handle(self, inputs: list[Input]) -> None:
        created = [i.event.occurred_at for i in inputs if isinstance(i.event, OrderCreated)]
        if created:
            await self.reference.current_at(max(created))
        await self.flow.each(inputs, self._one)

    async def _one(self, item: Input) -> None:
        table, event = self.flow.table, item.event
        row = table.get(item.partition, item.key)
        if isinstance(event, OrderCreated):
            if row is not None and row.cause != event.event_id:
                LOG.warning("order %s: a second OrderCreated (%s); the first stands",
                            event.order_id, event.event_id)  # fmt: skip
                self.flow.counts["duplicate-orders"] += 1
                return
            self.flow.publish(self._priced(event))
            if row is None:
                table.put(item.partition, item.key, Priced(event.event_id))
        elif isinstance(event, FINAL_EVENTS) and row is not None and row.finished_at is None:
            finished = replace(row, finished_at=event.occurred_at)
            table.put(item.partition, item.key, finished)
            self.retention.note(item.partition, item.key, finished)

    def _priced(self, order: OrderCreated) -> Event:
        return price_or_fail(self.reference, order)


def _finished_at(row: Priced) -> datetime | None:
    return row.finished_at


def register(app: faust.App, flow: Flow[Priced], reference: Reference,
             retention: timedelta) -> None:  # fmt: skip
    """Add the pricing agent to the app."""
    pricing = Pricing(flow, reference, retention)

    @app.task
    async def follow_reference_data() -> None:
        await reference.start()

    @app.agent(flow.topic("orders"), name="pricing")
    async def price(stream: StreamT[bytes]) -> None:
        await flow.consume(stream, pricing.handle, WANTED)

    @app.timer(TICK_S)
    async def forget() -> None:
        await flow.forget(pricing.retention)
