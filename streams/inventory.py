"""Inventory worker: decides reservation requests in each product's log order.

It folds the inventory topic, one partition at a time, with the stock rules of
schemas.rules.stock (the rules the inventory projection applies too), so two orders
can never both take the last unit and stock never goes below zero. Each
StockReservationRequested is answered on the orders topic, keyed by order:
StockReserved or StockReservationRejected. Releases and commits come from the order
worker; a removal that would leave reserved units without stock is dead-lettered, not
applied.

State: the `stock` table, per product the stock level and who holds reservations. The
partition's cursor says which inventory records are applied, and rows are persisted
only after the answers they reflect (streams.checkpoint), so a record handled again
gives the same answer with the same id (a duplicate the order worker drops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import faust
from faust.types import StreamT

from schemas import StockReservationRejected, StockReservationRequested, StockReserved
from schemas.rules.stock import Decision, StockLevel, apply_stock
from streams.flow import Flow, Input, derived_id

WANTED = frozenset(
    {"StockAdjusted", "StockReservationRequested", "StockReleased", "StockCommitted"}
)


@dataclass(frozen=True)
class Stock:
    """A product's stock, as the inventory worker keeps it."""

    level: StockLevel

    def to_json(self) -> dict[str, Any]:
        level = self.level
        return {
            "on_hand": level.on_hand,
            "reserved": level.reserved,
            "sold": level.sold,
            "rejected": level.rejected,
            "reservations": dict(level.reservations),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(StockLevel(**data))


def register(app: faust.App, flow: Flow[Stock]) -> None:
    """Add the inventory agent to the app."""

    async def handle(inputs: list[Input]) -> None:
        await flow.each(inputs, lambda item: _decide(flow, item))

    @app.agent(flow.topic("inventory"), name="inventory")
    async def decide(stream: StreamT[bytes]) -> None:
        await flow.consume(stream, handle, WANTED)


async def _decide(flow: Flow[Stock], item: Input) -> None:
    """Apply one event to its product's stock; answer a reservation request."""
    row = flow.table.get(item.partition, item.key)
    level, decision = apply_stock(row.level if row else StockLevel(), item.event)
    if decision is not None:
        assert isinstance(item.event, StockReservationRequested)
        flow.publish(_answer(item.event, decision))
    if row is None or level != row.level:
        flow.table.put(item.partition, item.key, Stock(level))


def _answer(
    request: StockReservationRequested, decision: Decision
) -> StockReserved | StockReservationRejected:
    ids = {
        "occurred_at": request.occurred_at,
        "product_id": request.product_id,
        "order_id": request.order_id,
        "quantity": request.quantity,
    }
    if decision.reserved:
        return StockReserved(event_id=derived_id(request.event_id, "reserved"), **ids)
    return StockReservationRejected(
        event_id=derived_id(request.event_id, "rejected"), available=max(decision.available, 0),
        **ids,
    )  # fmt: skip
