"""Inventory worker: decides reservation requests in each product's log order.

It folds the inventory topic, one partition at a time, with the stock rules of
schemas.stock (the rules the inventory projection applies too), so two orders can never
both take the last unit and stock never goes below zero. Each StockReservationRequested
is answered on the reservations topic, keyed by order: StockReserved or
StockReservationRejected. Releases and commits come from the order worker; a removal
that would leave reserved units without stock is dead-lettered, not applied.

State: the `stock` table, per product the stock level and the offset of the last event
applied, so a redelivered event is never applied twice (a redelivered request is only
answered again, from the current state).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import EventT, StreamT

from ecom.errors import InvalidEvent
from schemas import Event, StockReservationRejected, StockReservationRequested, StockReserved
from schemas.stock import Decision, StockLevel, apply_stock
from streams.flow import Flow, Records, derived_id


def register(app: faust.App, flow: Flow) -> None:
    """Add the inventory agent and its table to the app."""
    stock = flow.table("stock")

    @app.agent(flow.topic("inventory"), name="inventory")
    async def decide(stream: StreamT[bytes]) -> None:
        await flow.consume(stream, lambda records: _decide(flow, stock, records))


async def _decide(flow: Flow, stock: Any, records: Records) -> None:
    for record in records:
        event = await flow.decode(record)
        if event is not None:
            await _handle(flow, stock, record, event)


async def _handle(flow: Flow, stock: Any, record: EventT[Any], event: Event) -> None:
    product, offset = record.key, record.message.offset
    row = stock.get(product) or {}
    level = _level(row)
    if offset <= row.get("applied", -1):  # delivered again after a crash
        if isinstance(event, StockReservationRequested):
            held = event.order_id in level.reservations
            await _answer(
                flow, event, Decision(event.order_id, event.quantity, held, level.available)
            )
        return
    try:
        level, decision = apply_stock(level, event)
    except InvalidEvent as error:
        flow.save(stock, record, _row(level, offset))
        await flow.dead_letter(record, error)
        return
    flow.save(stock, record, _row(level, offset))
    if decision is not None:
        assert isinstance(event, StockReservationRequested)
        await _answer(flow, event, decision)


async def _answer(flow: Flow, request: StockReservationRequested, decision: Decision) -> None:
    ids = {
        "product_id": request.product_id,
        "order_id": request.order_id,
        "quantity": request.quantity,
    }
    if decision.reserved:
        await flow.publish(StockReserved(event_id=derived_id(request.event_id, "reserved"), **ids))
    else:
        available = max(decision.available, 0)
        await flow.publish(
            StockReservationRejected(
                event_id=derived_id(request.event_id, "rejected"), available=available, **ids
            )
        )


def _level(row: dict[str, Any]) -> StockLevel:
    return StockLevel(
        on_hand=row.get("on_hand", 0),
        reserved=row.get("reserved", 0),
        sold=row.get("sold", 0),
        rejected=row.get("rejected", 0),
        reservations=row.get("reservations", {}),
    )


def _row(level: StockLevel, offset: int) -> dict[str, Any]:
    return {
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "sold": level.sold,
        "rejected": level.rejected,
        "reservations": dict(level.reservations),
        "applied": offset,
    }
