"""The order worker's state machine, pricing and the payment gateway, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from ecom.gateway import declined
from schemas import (
    Codec,
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    OrderExpired,
    OrderPaymentRequested,
    OrderStockReserved,
    StockReleased,
    StockReservationRequested,
)
from schemas.errors import NotPriceable
from schemas.rules.pricing import Book, Price, price_order, tax_of
from streams.flow import derived_id
from streams.order import OrderState, step
from tests.samples import sample

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)
ORDER = sample(
    "OrderCreated",
    occurred_at=NOW,
    lines=[{"product_id": "p-1", "quantity": 2}, {"product_id": "p-2", "quantity": 1}],
)
PRICED = sample("OrderPriced", event_id=derived_id(ORDER.event_id, "priced"), occurred_at=NOW)


def at(seconds: float, event_type: str, **changes: Any) -> Event:
    """A sample event that happened `seconds` after the order."""
    return sample(event_type, occurred_at=NOW + timedelta(seconds=seconds), **changes)


def run(events: list[Event], known: bool = True) -> tuple[OrderState | None, list[Event]]:
    state: OrderState | None = None
    published: list[Event] = []
    for event in events:
        state, outputs = step(state, event, TIMEOUT, known)
        published += outputs
    return state, published


def kinds(events: list[Event]) -> list[str]:
    return [e.event_type for e in events]


def reserved(product: str, seconds: float = 1) -> Event:
    return at(seconds, "StockReserved", product_id=product, quantity=1)


def status(state: OrderState | None) -> str | None:
    return None if state is None else state.status


def test_a_new_order_asks_for_every_line() -> None:
    state, published = run([ORDER])
    assert status(state) == "reserving"
    assert [
        (e.product_id, e.quantity) for e in published if isinstance(e, StockReservationRequested)
    ] == [("p-1", 2), ("p-2", 1)]
    assert state is not None
    assert state.deadline == NOW + TIMEOUT, "the deadline derives from the order's time"


def test_an_order_of_an_unknown_user_is_cancelled_and_asks_for_nothing() -> None:
    state, published = run([ORDER], known=False)
    assert status(state) == "cancelled"
    assert kinds(published) == ["OrderCancelled"]
    assert isinstance(published[0], OrderCancelled)
    assert published[0].reason == "unknown-user"


def test_reserved_and_priced_asks_for_payment_then_confirms_and_commits() -> None:
    state, published = run([ORDER, reserved("p-1"), PRICED, reserved("p-2", seconds=3)])
    assert kinds(published)[-2:] == ["OrderStockReserved", "OrderPaymentRequested"]
    request = published[-1]
    assert isinstance(request, OrderPaymentRequested)
    completed = NOW + timedelta(seconds=3)  # the event that completed it
    assert (request.amount.amount_minor, request.expires_at) == (4758, completed + TIMEOUT)
    state, more = step(state, at(4, "PaymentAuthorized"), TIMEOUT, True)
    assert status(state) == "confirmed"
    assert kinds(more) == ["OrderConfirmed", "StockCommitted", "StockCommitted"]
    assert isinstance(more[0], OrderConfirmed)
    assert more[0].total.amount_minor == 4758


def test_a_rejected_line_cancels_and_releases_every_line() -> None:
    rejected = at(2, "StockReservationRejected", product_id="p-2", quantity=1, available=0)
    state, published = run([ORDER, reserved("p-1"), rejected])
    assert status(state) == "cancelled"
    cancel = next(e for e in published if isinstance(e, OrderCancelled))
    assert (cancel.reason, cancel.detail) == ("out-of-stock", "p-2: 1 wanted, 0 available")
    assert sorted(e.product_id for e in published if isinstance(e, StockReleased)) == ["p-1", "p-2"]


def test_a_late_reservation_for_a_cancelled_order_is_released_at_once() -> None:
    state, published = run([ORDER, at(1, "OrderCancellationRequested"), reserved("p-1", 2)])
    assert status(state) == "cancelled"
    releases = [e for e in published if isinstance(e, StockReleased)]
    assert [e.product_id for e in releases] == ["p-1", "p-2", "p-1"]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (at(5, "PaymentFailed"), "payment-failed"),
        (at(5, "OrderPricingFailed", event_id=derived_id(ORDER.event_id, "pricing-failed")),
         "not-priceable"),
    ],
)  # fmt: skip
def test_failures_cancel_with_their_reason(event: Event, reason: str) -> None:
    events = [ORDER, reserved("p-1"), reserved("p-2")]
    if reason == "payment-failed":
        events.append(PRICED)
    state, published = run([*events, event])
    assert status(state) == "cancelled"
    assert next(e for e in published if isinstance(e, OrderCancelled)).reason == reason


def test_only_the_deadline_the_order_holds_expires_it() -> None:
    state, _ = run([ORDER, reserved("p-1"), reserved("p-2"), PRICED])
    assert state is not None
    other = at(60, "PaymentDeadlinePassed", deadline=state.deadline + TIMEOUT)
    unchanged, nothing = step(state, other, TIMEOUT, True)
    assert (status(unchanged), nothing) == ("awaiting-payment", [])
    due = at(60, "PaymentDeadlinePassed", deadline=state.deadline)
    expired, published = step(state, due, TIMEOUT, True)
    assert status(expired) == "expired"
    assert kinds(published) == ["OrderExpired", "StockReleased", "StockReleased"]
    assert isinstance(published[0], OrderExpired)
    assert published[0].occurred_at == state.deadline


def test_final_states_stick() -> None:
    state, _ = run([ORDER, reserved("p-1"), reserved("p-2"), PRICED, at(5, "PaymentAuthorized")])
    assert state is not None
    for event in (
        at(6, "PaymentFailed"),
        at(6, "OrderCancellationRequested"),
        at(99, "PaymentDeadlinePassed", deadline=state.deadline),
    ):
        after, published = step(state, event, TIMEOUT, True)
        assert status(after) == "confirmed"
        assert published == []


def test_redelivered_events_publish_the_same_events_and_change_nothing() -> None:
    events = [ORDER, reserved("p-1"), PRICED, reserved("p-2")]
    state, first = run(events)
    again, second = run([*events, *events])
    assert again == state
    codec = Codec()
    assert {codec.encode(e) for e in second} == {codec.encode(e) for e in first}, "byte-identical"
    assert not any(isinstance(e, OrderStockReserved) for e in second[len(first) :])


def test_a_second_order_created_with_the_same_id_changes_nothing() -> None:
    state, _ = run([ORDER, reserved("p-1")])
    _, asks = step(state, ORDER, TIMEOUT, True)  # the same one again: asks for what is open
    assert [e.product_id for e in asks if isinstance(e, StockReservationRequested)] == ["p-2"]
    other = OrderCreated.model_validate(
        ORDER.model_dump() | {"event_id": "another", "user_id": "u-9", "lines": [
            {"product_id": "p-9", "quantity": 7}]}
    )  # fmt: skip
    after, published = step(state, other, TIMEOUT, True)
    assert (after, published) == (state, [])
    other_priced = at(1, "OrderPriced", event_id=derived_id("another", "priced"))
    after, published = step(state, other_priced, TIMEOUT, True)
    assert after is not None
    assert after.total is None, "only the pricing of the first OrderCreated counts"


def test_an_order_state_survives_its_changelog_form() -> None:
    state, _ = run([ORDER, reserved("p-1"), PRICED, reserved("p-2")])
    assert state is not None
    assert OrderState.from_json(orjson.loads(orjson.dumps(state.to_json()))) == state


def _order(**changes: Any) -> OrderCreated:
    order = sample("OrderCreated", **changes)
    assert isinstance(order, OrderCreated)
    return order


def _reference(**rates: int) -> Book:
    return Book(
        prices={"p-1": Price(1999, "EUR"), "p-2": Price(500, "USD")},
        categories={"p-1": "standard", "p-2": "food"},
        rates={("DE", "standard"): 1900, **{("DE", k): v for k, v in rates.items()}},
    )


def test_pricing_applies_the_rate_of_the_country_and_category() -> None:
    order = _order(lines=[{"product_id": "p-1", "quantity": 3}])
    priced = price_order(_reference(), order, "e-1")
    (line,) = priced.lines
    assert (line.net_minor, line.tax_rate_bp, line.tax_minor) == (5997, 1900, 1139)
    assert (priced.subtotal.amount_minor, priced.tax.amount_minor, priced.total.amount_minor) == (
        5997,
        1139,
        7136,
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"product_id": "p-2", "quantity": 1}], "no price for p-2 in EUR"),
        ([{"product_id": "p-9", "quantity": 1}], "no price for p-9"),
    ],
)
def test_what_cannot_be_priced_says_why(lines: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(NotPriceable, match=message):
        price_order(_reference(), _order(lines=lines), "e-1")
    with pytest.raises(NotPriceable, match="no tax rate for standard in FR"):
        price_order(_reference(), _order(shipping_country="FR"), "e-1")


def test_tax_rounds_half_up_to_a_minor_unit() -> None:
    assert [tax_of(n, 1900) for n in (0, 1, 2, 3, 100)] == [0, 0, 0, 1, 19]
    assert tax_of(50, 1000) == 5
    assert tax_of(5, 1000) == 1  # 0.5 rounds up


def test_the_gateway_declines_a_stable_share() -> None:
    orders = [f"o-{i}" for i in range(5000)]
    share = sum(declined(o, 0.2) for o in orders) / len(orders)
    assert 0.17 < share < 0.23
    assert [declined(o, 0.2) for o in orders[:50]] == [declined(o, 0.2) for o in orders[:50]]
    assert not any(declined(o, 0) for o in orders)
    assert all(declined(o, 1) for o in orders)
