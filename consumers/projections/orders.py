"""Orders: status and its timeline, lines, totals with taxes, and the payment.

Reads the orders topic, where each order's whole story is (payments included). The
status only moves forward (created, then stock-reserved / priced, awaiting-payment,
then one final state). Timeline entries are kept sorted by time.
An order id belongs to its first OrderCreated: another one with the same id, and its
pricing, change nothing (as in the order flow). Events of an order id no OrderCreated
named make no row.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from consumers.projection import Projection, Row, RowKey, Table, columns
from schemas import (
    Event,
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
    PaymentCreated,
    PaymentFailed,
    PaymentRefunded,
)
from schemas.rules.order import RANK, is_final

Step = tuple[str, str, str, str]  # (when, what, detail, event id)


@dataclass(frozen=True)
class Order(Row):
    """One order as the query view shows it."""

    TABLE: ClassVar[Table] = Table(
        "orders",
        ("order_id",),
        columns(
            order_id="TEXT",
            user_id="TEXT",
            status="TEXT",
            shipping_country="TEXT",
            currency="TEXT",
            lines="TEXT",
            priced_lines="TEXT",
            subtotal_minor="BIGINT",
            tax_minor="BIGINT",
            total_minor="BIGINT",
            payment="TEXT",
            timeline="TEXT",
            reason="TEXT",
            created_at="TEXT",
            expires_at="TEXT",
        ),
        indexes=(("user_id",), ("status",)),
    )
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"lines", "priced_lines", "payment", "timeline"}
    )
    DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("created_at", "expires_at")

    order_id: str
    user_id: str | None = None
    status: str | None = None
    shipping_country: str | None = None
    currency: str | None = None
    lines: tuple[tuple[str, int], ...] = ()
    priced_lines: tuple[tuple[str, int, int, int, int, int], ...] = ()
    subtotal_minor: int | None = None
    tax_minor: int | None = None
    total_minor: int | None = None
    payment: Mapping[str, Any] | None = None
    timeline: tuple[Step, ...] = ()
    reason: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None

    def advanced(self, status: str) -> Order:
        """Return the order moved to status, unless that would go backwards."""
        if is_final(self.status) or RANK[status] < RANK.get(self.status or "", -1):
            return self
        return self.changed(status=status)

    def has_noted(self, event: Event) -> bool:
        """Tell whether the timeline holds this event already."""
        return any(entry[3] == event.event_id for entry in self.timeline)

    def noted(self, event: Event, step: str, detail: str = "") -> Order:
        """Add a timeline entry (once per event id: redelivered events repeat theirs)."""
        if self.has_noted(event):
            return self
        entry = (event.occurred_at.isoformat(), step, detail, event.event_id)
        # The timeline is sorted and holds no entry of this event, so inserting in order
        # gives what sorting the set of entries would, without the set or the sort.
        timeline = list(self.timeline)
        insort(timeline, entry)
        return self.changed(timeline=tuple(timeline))


class Orders(Projection):
    """Orders with their timeline, totals and payment."""

    name = "orders"
    topics = ("orders",)
    row_types = (Order,)
    partition_local = True  # rows keyed by the record key

    def keys(self, event: Event) -> list[RowKey]:
        order_id = getattr(event, "order_id", None)
        if order_id is None or event.domain not in ("order", "payment"):
            return []
        return [(Order, (order_id,))]

    def evolve(self, rows: dict[RowKey, Row | None], event: Event) -> dict[RowKey, Row]:
        ((key, row),) = rows.items()
        order = row if isinstance(row, Order) else None
        if order is None:
            if not isinstance(event, OrderCreated):
                return {}  # no such order (a cancel of a made-up id): ignored, as by the flow
            order = _NEW.changed(order_id=key[1][0])
        updated = _payment(order, event) if event.domain == "payment" else _order(order, event)
        # The fields compared as dicts: what == compares, without building two tuples.
        unchanged = updated is order or updated.__dict__ == order.__dict__
        return {} if unchanged else {key: updated}


_NEW = Order("")  # a new order is a copy of this one (a frozen dataclass's __init__ is slow)


def _order(order: Order, event: Event) -> Order:
    if isinstance(event, OrderCreated):
        if order.user_id is not None and not order.has_noted(event):
            return order  # another OrderCreated with this id: the first one stands
        lines = tuple((line.product_id, line.quantity) for line in event.lines)
        created = order.changed(
            user_id=event.user_id,
            shipping_country=event.shipping_country,
            currency=event.currency,
            lines=lines,
            created_at=event.occurred_at,
        )
        return created.advanced("created").noted(event, "created")
    if isinstance(event, OrderCancellationRequested):
        return order.noted(event, "cancellation-requested", event.reason)
    if isinstance(event, OrderStockReserved):
        return order.advanced("stock-reserved").noted(event, "stock-reserved")
    if isinstance(event, OrderPriced):
        return _priced(order, event)
    if isinstance(event, OrderPricingFailed):
        return order.noted(event, "pricing-failed", event.reason)
    if isinstance(event, OrderPaymentRequested):
        waiting = order.changed(expires_at=event.expires_at).advanced("awaiting-payment")
        return waiting.noted(event, "awaiting-payment", f"until {event.expires_at.isoformat()}")
    if isinstance(event, OrderConfirmed):
        return order.advanced("confirmed").noted(event, "confirmed")
    if isinstance(event, OrderCancelled):
        detail = f"{event.reason}: {event.detail}" if event.detail else event.reason
        cancelled = order.advanced("cancelled")
        if cancelled.status == "cancelled" and order.status != "cancelled":
            cancelled = cancelled.changed(reason=event.reason)
        return cancelled.noted(event, "cancelled", detail)
    if isinstance(event, OrderExpired):
        return order.advanced("expired").noted(event, "expired")
    return order


def _priced(order: Order, event: OrderPriced) -> Order:
    if order.priced_lines and not order.has_noted(event):
        return order  # the pricing of a duplicate OrderCreated: the first pricing stands
    lines = tuple(
        (
            line.product_id,
            line.quantity,
            line.unit_price_minor,
            line.tax_rate_bp,
            line.net_minor,
            line.tax_minor,
        )
        for line in event.lines
    )
    priced = order.changed(
        priced_lines=lines,
        subtotal_minor=event.subtotal.amount_minor,
        tax_minor=event.tax.amount_minor,
        total_minor=event.total.amount_minor,
    )
    total = f"{event.total.amount_minor} {event.total.currency}"
    return priced.advanced("priced").noted(event, "priced", total)


def _payment(order: Order, event: Event) -> Order:
    payment = dict(order.payment or {})
    if isinstance(event, PaymentCreated):
        payment |= {
            "payment_id": event.payment_id,
            "status": "created",
            "amount_minor": event.amount.amount_minor,
            "currency": event.amount.currency,
        }
        return order.changed(payment=payment).noted(event, "payment-created", event.payment_id)
    if isinstance(event, PaymentAuthorized):
        payment |= {
            "payment_id": event.payment_id,
            "status": "authorized",
            "authorization": event.authorization,
        }
        return order.changed(payment=payment).noted(event, "payment-authorized", event.payment_id)
    if isinstance(event, PaymentFailed):
        payment |= {"payment_id": event.payment_id, "status": "failed", "reason": event.reason}
        return order.changed(payment=payment).noted(event, "payment-failed", event.reason)
    if isinstance(event, PaymentRefunded):
        payment |= {"payment_id": event.payment_id, "status": "refunded", "reason": event.reason}
        return order.changed(payment=payment).noted(event, "payment-refunded", event.reason)
    return order
