"""Inventory worker: decides reservation requests in each product's log order.

It folds the inventory topic, one partition at a time, with the stock rules of
schemas.rules.stock (the rules the inventory projection applies too), so two orders can never
both take the last unit and stock never goes below zero. Each StockReservationRequested
is answered on the reservations topic, keyed by order: StockReserved or
StockReservationRejected. Releases and commits come from the order worker; a removal
that would leave reserved units without stock is dead-lettered, not applied.

State: the `stock` table, per product the stock level and the offset of the last event
applied. A batch's rows are saved only after Kafka acknowledged its answers, so an event
at or below the saved offset was applied and answered: when delivered again after a
crash it is skipped. A crash before the save replays the batch from the old rows, which
gives the same answers with the same ids (duplicates the order worker drops).
"""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from ecom.errors import InvalidEvent
from schemas import Event, StockReservationRejected, StockReservationRequested, StockReserved
from schemas.rules.stock import Decision, StockLevel, apply_stock
from streams.flow import Flow, Records, derived_id


def register(app: faust.App, flow: Flow) -> None:
    """Add the inventory agent and its table to the app."""
    stock = flow.table("stock")

    @app.agent(flow.topic("inventory"), name="inventory")
    async def decide(stream: StreamT[bytes]) -> None:
        await flow.consume(stream, lambda records: _decide(flow, stock, records))


async def _decide(flow: Flow, stock: Any, records: Records) -> None:
    """Decide a batch; save the new stock rows only once Kafka has acknowledged every
    answer, so a saved row never runs ahead of the answers it reflects."""
    rows: dict[bytes, tuple[EventT[Any], dict[str, Any]]] = {}
    for record in records:
        if not _next_in_line(flow, stock, rows, record):
            continue
        rows[_cursor(record)] = (record, {"next": record.message.offset + 1})
        event = await flow.decode(record)
        if event is None:
            continue
        product = cast(bytes, record.key)
        row = rows[product][1] if product in rows else (stock.get(product) or {})
        rows[product] = (record, await _handle(flow, row, record, event))
    await flow.settle()
    for key, (record, row) in rows.items():
        flow.save(stock, record, row, key)


def _next_in_line(flow: Flow, stock: Any, rows: dict[bytes, Any], record: EventT[Any]) -> bool:
    """Tell whether a record is the next one of its partition.

    Stock decisions depend on order, so each partition's records must be applied once
    and in offset order. The table keeps a cursor per partition (saved with the rows).
    After a restart or a broker failover, faust has been seen to hand over records past
    ones it never delivered; then the worker restarts before applying anything of the
    batch (its commits never pass the cursor, so the fresh process reads those records).
    Records below the cursor were applied already.
    """
    key = _cursor(record)
    saved = rows[key][1] if key in rows else stock.get(key)
    offset = record.message.offset
    if saved is None or offset == saved["next"]:
        return True
    if offset > saved["next"]:
        flow.skipped(record, saved["next"])
    return False


def _cursor(record: EventT[Any]) -> bytes:
    return f"__cursor-{record.message.partition}".encode()


async def _handle(
    flow: Flow, row: dict[str, Any], record: EventT[Any], event: Event
) -> dict[str, Any]:
    """Apply one event to a product's row, answer a request; return the new row."""
    offset = record.message.offset
    if offset <= row.get("applied", -1):  # delivered again after a crash: answered already
        return row
    level = _level(row)
    try:
        level, decision = apply_stock(level, event)
    except InvalidEvent as error:
        await flow.dead_letter(record, error)
        return _row(level, offset)
    if decision is not None:
        assert isinstance(event, StockReservationRequested)
        await _answer(flow, event, decision)
    return _row(level, offset)


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
