"""Order worker: the order state machine.

It folds the order's own stream: every event that decides an order's fate is on the
orders topic, keyed by the order (the customer's commands, the inventory worker's
answers, pricing, payments, and its own payment deadlines), so it reads one history in
one order, and handling it again after a crash takes every decision again the same
way. It asks for stock (StockReservationRequested per line), and:

- confirms the order (OrderConfirmed, and StockCommitted per line) once every line is
  reserved, the order is priced and the payment is authorized;
- cancels it (OrderCancelled, and StockReleased per line) when a line is rejected, it
  cannot be priced, the payment fails, the user asks first, or the user is unknown
  (no UserCreated names them: the worker keeps a replica of the users topic);
- expires it (OrderExpired, and StockReleased per line) when it is not reserved and
  priced within the payment timeout of its creation, or not paid within the timeout of
  the event that completed it; a timer appends PaymentDeadlinePassed to the order's
  stream, so the decision is taken in order with everything else that happens to it:
  a payment ahead of it in the stream confirms, one behind it is refunded.

Decisions are deterministic: deadlines derive from the causing events' times (never
the clock at processing), and every event published has an id derived from its cause,
so a record handled again publishes byte-identical events. The first OrderCreated of an
order id wins; another one with that id is ignored (logged and counted), and only the
pricing of the first one counts. A reservation that arrives for an order already
cancelled or expired is released at once. Finished orders leave the table after
ECOM_FLOW_RETENTION_S (a tombstone on the changelog).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import faust

from ecom.kafka import Delivery, Outcome
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
from schemas.rules.order import (
    AWAITING_PAYMENT,
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    RESERVING,
    WAITING,
    is_final,
)
from streams.flow import Flow, Input, derived_id
from streams.replica import Users
from streams.state import Retention

LOG = logging.getLogger("ecom.streams")
SEEN = 16  # ids of the last events an order took (the state machine is idempotent anyway)
# What the order worker acts on; its own outputs come back on the orders topic, unread.
WANTED = frozenset({
    "OrderCreated", "OrderCancellationRequested", "OrderPriced", "OrderPricingFailed",
    "StockReserved", "StockReservationRejected", "PaymentAuthorized", "PaymentFailed",
    "PaymentDeadlinePassed",
})  # fmt: skip
TICK_S = 0.25
RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class OrderState:
    """One order as the worker knows it."""

    order_id: str
    cause: str  # the id of the OrderCreated that made it
    status: str
    lines: tuple[tuple[str, int], ...]
    currency: str
    deadline: datetime
    answered: tuple[tuple[str, bool], ...] = ()  # product -> reserved?
    total: int | None = None
    announced: bool = False
    seen: tuple[str, ...] = ()
    finished_at: datetime | None = None

    def answer(self, product: str, reserved: bool) -> OrderState:
        answers = dict(self.answered) | {product: reserved}
        return replace(self, answered=tuple(sorted(answers.items())))

    def reserved(self) -> bool:
        answers = dict(self.answered)
        return all(answers.get(product) for product, _ in self.lines)

    def finished(self, status: str, at: datetime) -> OrderState:
        return replace(self, status=status, finished_at=at)

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "cause": self.cause,
            "status": self.status,
            "lines": self.lines,
            "currency": self.currency,
            "deadline": self.deadline.isoformat(),
            "answered": self.answered,
            "total": self.total,
            "announced": self.announced,
            "seen": self.seen,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        finished = data["finished_at"]
        return cls(
            order_id=data["order_id"],
            cause=data["cause"],
            status=data["status"],
            lines=tuple((p, q) for p, q in data["lines"]),
            currency=data["currency"],
            deadline=datetime.fromisoformat(data["deadline"]),
            answered=tuple((p, r) for p, r in data["answered"]),
            total=data["total"],
            announced=data["announced"],
            seen=tuple(data["seen"]),
            finished_at=datetime.fromisoformat(finished) if finished else None,
        )


Step = tuple[OrderState | None, list[Event]]
Move = tuple[OrderState, list[Event]]


def step(state: OrderState | None, event: Event, timeout: timedelta, user_known: bool) -> Step:
    """Decide what an event does to an order. Pure: the new state and what to publish."""
    if isinstance(event, OrderCreated):
        return _created(state, event, timeout, user_known)
    if state is None or event.event_id in state.seen or event.event_type not in WANTED:
        return state, []
    after, outputs = _transition(state, event, timeout)
    if after == state and not outputs:
        return state, []  # no effect: not remembered, so a later copy still counts
    return replace(after, seen=(*after.seen, event.event_id)[-SEEN:]), outputs


def _transition(
    state: OrderState, event: Event, timeout: timedelta
) -> tuple[OrderState, list[Event]]:
    if isinstance(event, StockReserved):
        return _reserved(state, event, timeout)
    if is_final(state.status):
        return state, []
    if isinstance(event, StockReservationRejected):
        detail = f"{event.product_id}: {event.quantity} wanted, {event.available} available"
        return _cancel(state.answer(event.product_id, False), event, "out-of-stock", detail)
    if isinstance(event, OrderPriced):
        if event.event_id != derived_id(state.cause, "priced"):
            return state, []  # the pricing of another OrderCreated with this id
        return _progress(replace(state, total=event.total.amount_minor), event, timeout)
    if isinstance(event, OrderPricingFailed):
        if event.event_id != derived_id(state.cause, "pricing-failed"):
            return state, []
        return _cancel(state, event, "not-priceable", event.reason)
    if isinstance(event, OrderCancellationRequested):
        return _cancel(state, event, "user", event.reason)
    if isinstance(event, PaymentDeadlinePassed) and event.deadline == state.deadline:
        return _expire(state, event)
    if state.status != AWAITING_PAYMENT:
        return state, []
    if isinstance(event, PaymentAuthorized):
        return _confirm(state, event)
    if isinstance(event, PaymentFailed):
        return _cancel(state, event, "payment-failed", event.reason)
    return state, []


def _created(
    state: OrderState | None, event: OrderCreated, timeout: timedelta, user_known: bool
) -> Step:
    if state is not None and state.cause != event.event_id:
        return state, []  # another OrderCreated for an existing order id: the first stands
    if state is None:
        state = OrderState(
            order_id=event.order_id,
            cause=event.event_id,
            status=RESERVING,
            lines=tuple((line.product_id, line.quantity) for line in event.lines),
            currency=event.currency,
            # Reserving and pricing get a deadline too: an order never waits forever for
            # an answer (a worker bug, a lost message); it expires and frees its stock.
            deadline=event.occurred_at + timeout,
            seen=(event.event_id,),
        )
        if not user_known:
            return _cancel(state, event, "unknown-user", f"no user {event.user_id}")
    elif state.status != RESERVING:
        return state, []
    # First time, or delivered again: ask for every line not answered yet (same ids).
    answered = dict(state.answered)
    asks: list[Event] = [
        StockReservationRequested(
            event_id=derived_id(event.event_id, "reserve", product),
            occurred_at=event.occurred_at,
            product_id=product,
            order_id=event.order_id,
            quantity=quantity,
        )
        for product, quantity in state.lines
        if product not in answered
    ]
    return state, asks


def _reserved(state: OrderState, event: StockReserved, timeout: timedelta) -> Move:
    state = state.answer(event.product_id, True)
    if is_final(state.status) and state.status != CONFIRMED:
        release = StockReleased(
            event_id=derived_id(event.event_id, "release"),
            occurred_at=event.occurred_at,
            product_id=event.product_id,
            order_id=event.order_id,
            reason=f"order {state.status}",
        )
        return state, [release]
    return _progress(state, event, timeout)


def _progress(state: OrderState, cause: Event, timeout: timedelta) -> Move:
    """Announce full reservation, and ask for payment once reserved and priced."""
    if state.status != RESERVING or not state.reserved():
        return state, []
    outputs: list[Event] = []
    if not state.announced:
        outputs.append(
            OrderStockReserved(
                event_id=derived_id(state.cause, "stock-reserved"),
                occurred_at=cause.occurred_at,
                order_id=state.order_id,
            )
        )
        state = replace(state, announced=True)
    if state.total is None:
        return state, outputs
    deadline = cause.occurred_at + timeout
    outputs.append(
        OrderPaymentRequested(
            event_id=derived_id(state.cause, "payment-requested"),
            occurred_at=cause.occurred_at,
            order_id=state.order_id,
            amount=Money(amount_minor=state.total, currency=state.currency),
            expires_at=deadline,
        )
    )
    return replace(state, status=AWAITING_PAYMENT, deadline=deadline), outputs


def _confirm(state: OrderState, event: PaymentAuthorized) -> Move:
    assert state.total is not None
    total = Money(amount_minor=state.total, currency=state.currency)
    at = event.occurred_at
    outputs: list[Event] = [
        OrderConfirmed(
            event_id=derived_id(event.event_id, "confirmed"),
            occurred_at=at,
            order_id=event.order_id,
            total=total,
        )
    ]
    outputs += [
        StockCommitted(
            event_id=derived_id(event.event_id, "commit", product),
            occurred_at=at,
            product_id=product,
            order_id=event.order_id,
        )
        for product, _ in state.lines
    ]
    return state.finished(CONFIRMED, at), outputs


def _cancel(state: OrderState, cause: Event, reason: CancelReason, detail: str) -> Move:
    outputs: list[Event] = [
        OrderCancelled(
            event_id=derived_id(cause.event_id, "cancelled"),
            occurred_at=cause.occurred_at,
            order_id=state.order_id,
            reason=reason,
            detail=detail[:500],
        )
    ]
    if reason != "unknown-user":  # nothing was asked for: nothing to release
        outputs += _releases(state, cause, f"order cancelled: {reason}")
    return state.finished(CANCELLED, cause.occurred_at), outputs


def _expire(state: OrderState, cause: PaymentDeadlinePassed) -> Move:
    outputs: list[Event] = [
        OrderExpired(
            event_id=derived_id(cause.event_id, "expired"),
            occurred_at=cause.deadline,
            order_id=cause.order_id,
        )
    ]
    outputs += _releases(state, cause, "order expired")
    return state.finished(EXPIRED, cause.deadline), outputs


def _releases(state: OrderState, cause: Event, reason: str) -> list[Event]:
    """Release every line. The release lands after the line's request in the product's
    log, so it frees the line whether or not the answer has reached us yet."""
    return [
        StockReleased(
            event_id=derived_id(cause.event_id, "release", product),
            occurred_at=cause.occurred_at,
            product_id=product,
            order_id=state.order_id,
            reason=reason,
        )
        for product, _ in state.lines
    ]


class Orders:
    """The order agent's state and timers: deadlines, and finished orders to forget."""

    def __init__(self, flow: Flow[OrderState], users: Users, timeout: timedelta,
                 retention: timedelta) -> None:  # fmt: skip
        self.flow = flow
        self.users = users
        self.timeout = timeout
        # (when to look, deadline, partition, key): an order's deadline, and a later look
        # again in case the PaymentDeadlinePassed it published was lost.
        self._deadlines: list[tuple[datetime, datetime, int, bytes]] = []
        self._indexed: dict[int, int] = {}  # partition -> the load it was indexed from
        self.retention = Retention(flow.table, retention, _finished_at)

    async def handle(self, inputs: list[Input]) -> None:
        # Only "unknown user" needs the replica to be current as of the order's creation.
        unknown = [
            i.event.occurred_at
            for i in inputs
            if isinstance(i.event, OrderCreated)
            and not self.users.knows(i.event.user_id, i.event.occurred_at)
        ]
        if unknown:
            await self.users.current_at(max(unknown))
        await self.flow.each(inputs, self._one)

    async def _one(self, item: Input) -> None:
        before = self.flow.table.get(item.partition, item.key)
        event = item.event
        known = not isinstance(event, OrderCreated) or self.users.knows(
            event.user_id, event.occurred_at
        )
        state, outputs = step(before, event, self.timeout, known)
        if (
            isinstance(event, OrderCreated)
            and before is not None
            and before.cause != event.event_id
        ):
            LOG.warning("order %s: a second OrderCreated (%s); the first stands",
                        event.order_id, event.event_id)  # fmt: skip
            self.flow.counts["duplicate-orders"] += 1
        for output in outputs:
            self.flow.publish(output)
        if state is not None and state is not before:
            self.flow.table.put(item.partition, item.key, state)
            self._index(item.partition, item.key, state, before)

    def _index(
        self, partition: int, key: bytes, state: OrderState, before: OrderState | None = None
    ) -> None:
        """Remember when to look at an order again: at its deadline, or to forget it."""
        if state.status in WAITING:
            if before is None or before.deadline != state.deadline:
                heapq.heappush(self._deadlines, (state.deadline, state.deadline, partition, key))
        elif state.finished_at is not None and (before is None or before.finished_at is None):
            self.retention.note(partition, key, state)

    def tick(self) -> None:
        """Append a PaymentDeadlinePassed to the stream of every order whose deadline
        passed; what comes first in the stream decides."""
        for partition in self.flow.table.loaded_since(self._indexed):
            for key, state in list(self.flow.table.rows[partition].items()):
                if state.status in WAITING:
                    self._index(partition, key, state)
        now = datetime.now(UTC)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, deadline, partition, key = heapq.heappop(self._deadlines)
            found = self.flow.table.rows.get(partition, {}).get(key)
            if found is None or found.status not in WAITING or found.deadline != deadline:
                continue  # the order moved on
            self._publish_deadline(found, partition, key)

    def _publish_deadline(self, state: OrderState, partition: int, key: bytes) -> None:
        """Publish PaymentDeadlinePassed once; only a failed delivery brings it back (a
        restarted worker finds the order waiting and publishes it again)."""
        loop = asyncio.get_running_loop()
        entry = (datetime.now(UTC) + timedelta(seconds=RETRY_AFTER_S), state.deadline,
                 partition, key)  # fmt: skip

        def delivered(outcome: Outcome) -> None:
            if not isinstance(outcome, Delivery):
                loop.call_soon_threadsafe(heapq.heappush, self._deadlines, entry)

        self.flow.publish(
            PaymentDeadlinePassed(
                event_id=derived_id(state.cause, "deadline", state.deadline.isoformat()),
                occurred_at=state.deadline,
                order_id=state.order_id,
                deadline=state.deadline,
            ),
            delivered,
        )


def _finished_at(state: OrderState) -> datetime | None:
    return state.finished_at


def register(app: faust.App, flow: Flow[OrderState], users: Users, timeout: timedelta,
             retention: timedelta) -> None:  # fmt: skip
    """Add the order agent and its timer to the app."""
    orders = Orders(flow, users, timeout, retention)
    channel = flow.topic("orders")

    @app.task
    async def follow_users() -> None:
        await users.start()

    @app.agent(channel, name="order")
    async def run(stream: Any) -> None:
        await flow.consume(stream, orders.handle, WANTED)

    @app.timer(TICK_S)
    async def deadlines() -> None:
        orders.tick()
        await flow.forget(orders.retention)
