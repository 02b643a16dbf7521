"""Order worker: the order state machine.

It reads everything that happens to an order, all keyed by order id and so on the same
partition: the order's own events, the inventory worker's answers, payments, and its
own payment deadlines. It asks for stock (StockReservationRequested per line), and:

- confirms the order (OrderConfirmed, and StockCommitted per line) once every line is
  reserved, the order is priced and the payment is authorized;
- cancels it (OrderCancelled, and StockReleased per line) when a line is rejected, it
  cannot be priced, the payment fails, or the user asks first;
- expires it (OrderExpired, and StockReleased per line) when it is not reserved and
  priced within the payment timeout of its creation, or not paid within the timeout of
  the payment request; a timer feeds PaymentDeadlinePassed back into the stream, so the
  decision is taken in order with everything else that happens to the order.

A reservation that arrives for an order already cancelled or expired is released at
once, so no reservation is left dangling. State: the `orders` table; each order
remembers the ids of the events it has seen, so redelivered events change nothing. The
worker decides in small batches and saves a batch's states only after Kafka has
acknowledged everything the batch published.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import faust
from faust.types import EventT

from schemas import (
    Event,
    Money,
    OrderCancellationRequested,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    OrderExpired,
    OrderPaymentRequested,
    OrderPriced,
    OrderPricingFailed,
    OrderStockReserved,
    PaymentAuthorized,
    PaymentDeadlinePassed,
    PaymentFailed,
    StockCommitted,
    StockReleased,
    StockReservationRejected,
    StockReservationRequested,
    StockReserved,
)
from schemas.order import CancelReason
from schemas.rules.order import CONFIRMED, WAITING, is_final
from streams.flow import Flow, derived_id

State = dict[str, Any]
SEEN = 64
DEADLINE_TICK_S = 0.25
RESEND_AFTER_S = 5.0


def register(app: faust.App, flow: Flow, payment_timeout_s: float) -> None:
    """Add the order agent, its table and its deadline timer to the app."""
    orders = flow.table("orders")
    channel = flow.topic("orders", "reservations", "payments", "order-flow-deadlines")
    timeout = timedelta(seconds=payment_timeout_s)

    @app.agent(channel, name="order")
    async def run(stream: Any) -> None:
        await flow.consume(stream, lambda records: _process(flow, orders, records, timeout))

    sent: dict[bytes, float] = {}

    @app.timer(DEADLINE_TICK_S)
    async def deadlines() -> None:
        active = {tp.partition for tp in app.assignor.assigned_actives()}
        now = datetime.now(UTC)
        for key, state in list(orders.items()):
            if state.get("status") not in WAITING or state.get("partition") not in active:
                continue
            deadline = datetime.fromisoformat(state["deadline"])
            if deadline <= now and time.monotonic() - sent.get(key, 0.0) > RESEND_AFTER_S:
                sent[key] = time.monotonic()
                await flow.publish(
                    PaymentDeadlinePassed(
                        event_id=derived_id_of(state, "deadline", state["deadline"]),
                        order_id=key.decode(),
                        deadline=deadline,
                    )
                )


async def _process(
    flow: Flow, orders: Any, records: Sequence[EventT[Any]], timeout: timedelta
) -> None:
    """Decide a batch, publish what it decided, and only once Kafka has acknowledged all
    of it, save the new states: a crash in between replays the batch, which publishes the
    same events with the same ids again (the next worker drops them) instead of losing them."""
    states: dict[bytes, State | None] = {}
    changed: set[bytes] = set()
    outputs: list[Event] = []
    for record in records:
        event = await flow.decode(record)
        if event is None:
            continue
        key = cast(bytes, record.key)
        before = states[key] if key in states else orders.get(key)
        state, published = step(before, event, datetime.now(UTC), timeout)
        if state is not before and state is not None:
            state = {**state, "partition": record.message.partition}
            changed.add(key)
        states[key] = state
        outputs += published
    for output in outputs:
        await flow.publish(output)
    await flow.settle()
    for key in changed:
        state = states[key]
        assert state is not None
        # Outside of a single event's iteration, a table write must name its partition.
        orders.data[key] = state
        flow.track(orders.send_changelog(state["partition"], key, state))


def derived_id_of(state: State, *parts: str) -> str:
    """Return an id derived from the order's OrderCreated (kept in its state)."""
    return derived_id(state["cause"], *parts)


def step(
    state: State | None, event: Event, now: datetime, timeout: timedelta
) -> tuple[State | None, list[Event]]:
    """Decide what an event does to an order. Pure: returns the new state and what to publish."""
    if isinstance(event, OrderCreated):
        return _created(state, event, now, timeout)
    if state is None or event.event_id in state["seen"]:
        return state, []
    state = {**state, "seen": [*state["seen"], event.event_id][-SEEN:]}
    if isinstance(event, StockReserved):
        return _reserved(state, event, now, timeout)
    if is_final(state["status"]):
        return state, []
    if isinstance(event, StockReservationRejected):
        detail = f"{event.product_id}: {event.quantity} wanted, {event.available} available"
        return _cancel(
            state,
            event,
            "out-of-stock",
            detail,
            {"answered": {**state["answered"], event.product_id: False}},
        )
    if isinstance(event, OrderPriced):
        return _progress({**state, "total": event.total.amount_minor}, event, now, timeout)
    if isinstance(event, OrderPricingFailed):
        return _cancel(state, event, "not-priceable", event.reason)
    if isinstance(event, OrderCancellationRequested):
        return _cancel(state, event, "user", event.reason)
    if isinstance(event, PaymentDeadlinePassed) and now >= datetime.fromisoformat(
        state["deadline"]
    ):
        return _expire(state, event)
    if state["status"] != "awaiting-payment":
        return state, []
    if isinstance(event, PaymentAuthorized):
        return _confirm(state, event)
    if isinstance(event, PaymentFailed):
        return _cancel(state, event, "payment-failed", event.reason)
    return state, []


def _created(
    state: State | None, event: OrderCreated, now: datetime, timeout: timedelta
) -> tuple[State | None, list[Event]]:
    if state is not None and state["cause"] != event.event_id:
        return state, []  # another OrderCreated for an existing order id: the first one stands
    if state is None:
        state = {
            "status": "reserving",
            "order_id": event.order_id,
            "cause": event.event_id,
            "seen": [event.event_id],
            "lines": {line.product_id: line.quantity for line in event.lines},
            "answered": {},
            "currency": event.currency,
            "total": None,
            # Reserving and pricing get a deadline too: an order never waits forever for
            # an answer (a worker bug, a lost message); it expires and frees its stock.
            "deadline": (now + timeout).isoformat(),
        }
    elif state["status"] != "reserving":
        return state, []
    # First time, or delivered again: ask for every line not answered yet (same ids).
    asks: list[Event] = [
        StockReservationRequested(
            event_id=derived_id(event.event_id, "reserve", product),
            product_id=product,
            order_id=event.order_id,
            quantity=quantity,
        )
        for product, quantity in state["lines"].items()
        if product not in state["answered"]
    ]
    return state, asks


def _reserved(
    state: State, event: StockReserved, now: datetime, timeout: timedelta
) -> tuple[State, list[Event]]:
    state = {**state, "answered": {**state["answered"], event.product_id: True}}
    if is_final(state["status"]) and state["status"] != CONFIRMED:
        release = StockReleased(
            event_id=derived_id(event.event_id, "release"),
            product_id=event.product_id,
            order_id=event.order_id,
            reason=f"order {state['status']}",
        )
        return state, [release]
    return _progress(state, event, now, timeout)


def _progress(
    state: State, cause: Event, now: datetime, timeout: timedelta
) -> tuple[State, list[Event]]:
    """Announce full reservation, and ask for payment once reserved and priced."""
    if state["status"] != "reserving" or not all(state["answered"].get(p) for p in state["lines"]):
        return state, []
    order_id = state["order_id"]
    outputs: list[Event] = []
    if not state.get("announced"):
        outputs.append(
            OrderStockReserved(event_id=derived_id_of(state, "stock-reserved"), order_id=order_id)
        )
        state = {**state, "announced": True}
    if state["total"] is None:
        return state, outputs
    deadline = now + timeout
    outputs.append(
        OrderPaymentRequested(
            event_id=derived_id_of(state, "payment-requested"),
            order_id=order_id,
            amount=Money(amount_minor=state["total"], currency=state["currency"]),
            expires_at=deadline,
        )
    )
    return {**state, "status": "awaiting-payment", "deadline": deadline.isoformat()}, outputs


def _confirm(state: State, event: PaymentAuthorized) -> tuple[State, list[Event]]:
    total = Money(amount_minor=state["total"], currency=state["currency"])
    outputs: list[Event] = [
        OrderConfirmed(
            event_id=derived_id(event.event_id, "confirmed"), order_id=event.order_id, total=total
        )
    ]
    outputs += [
        StockCommitted(
            event_id=derived_id(event.event_id, "commit", product),
            product_id=product,
            order_id=event.order_id,
        )
        for product in state["lines"]
    ]
    return {**state, "status": "confirmed"}, outputs


def _cancel(
    state: State,
    cause: Event,
    reason: CancelReason,
    detail: str,
    changes: dict[str, Any] | None = None,
) -> tuple[State, list[Event]]:
    order_id = state["order_id"]
    outputs: list[Event] = [
        OrderCancelled(
            event_id=derived_id(cause.event_id, "cancelled"),
            order_id=order_id,
            reason=reason,
            detail=detail[:500],
        )
    ]
    outputs += _releases(state, cause, order_id, f"order cancelled: {reason}")
    return {**state, **(changes or {}), "status": "cancelled"}, outputs


def _expire(state: State, cause: PaymentDeadlinePassed) -> tuple[State, list[Event]]:
    outputs: list[Event] = [
        OrderExpired(event_id=derived_id(cause.event_id, "expired"), order_id=cause.order_id)
    ]
    outputs += _releases(state, cause, cause.order_id, "order expired")
    return {**state, "status": "expired"}, outputs


def _releases(state: State, cause: Event, order_id: str, reason: str) -> list[Event]:
    """Release every line. The release lands after the line's request in the product's
    log, so it frees the line whether or not the answer has reached us yet."""
    return [
        StockReleased(
            event_id=derived_id(cause.event_id, "release", product),
            product_id=product,
            order_id=order_id,
            reason=reason,
        )
        for product in state["lines"]
    ]
