"""The order worker's state machine, pricing and the payment gateway, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import (
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
from streams.order import step
from streams.payment import declined
from tests.samples import sample

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)
ORDER = sample(
    "OrderCreated",
    lines=[{"product_id": "p-1", "quantity": 2}, {"product_id": "p-2", "quantity": 1}],
)


def run(events: list[Event], now: datetime = NOW) -> tuple[dict[str, Any] | None, list[Event]]:
    state: dict[str, Any] | None = None
    published: list[Event] = []
    for event in events:
        state, outputs = step(state, event, now, TIMEOUT)
        published += outputs
    return state, published


def kinds(events: list[Event]) -> list[str]:
    return [e.event_type for e in events]


def reserved(product: str) -> Event:
    return sample("StockReserved", product_id=product, quantity=1)


def test_a_new_order_asks_for_every_line() -> None:
    state, published = run([ORDER])
    assert state is not None
    assert state["status"] == "reserving"
    assert [
        (e.product_id, e.quantity) for e in published if isinstance(e, StockReservationRequested)
    ] == [("p-1", 2), ("p-2", 1)]


def test_reserved_and_priced_asks_for_payment_then_confirms_and_commits() -> None:
    state, published = run([ORDER, reserved("p-1"), sample("OrderPriced"), reserved("p-2")])
    assert kinds(published)[-2:] == ["OrderStockReserved", "OrderPaymentRequested"]
    request = published[-1]
    assert isinstance(request, OrderPaymentRequested)
    assert (request.amount.amount_minor, request.expires_at) == (4758, NOW + TIMEOUT)
    state, more = step(state, sample("PaymentAuthorized"), NOW, TIMEOUT)
    assert state is not None
    assert state["status"] == "confirmed"
    assert kinds(more) == ["OrderConfirmed", "StockCommitted", "StockCommitted"]
    assert isinstance(more[0], OrderConfirmed)
    assert more[0].total.amount_minor == 4758


def test_a_rejected_line_cancels_and_releases_every_line() -> None:
    state, published = run(
        [
            ORDER,
            reserved("p-1"),
            sample("StockReservationRejected", product_id="p-2", quantity=1, available=0),
        ]
    )
    assert state is not None
    assert state["status"] == "cancelled"
    cancel = next(e for e in published if isinstance(e, OrderCancelled))
    assert (cancel.reason, cancel.detail) == ("out-of-stock", "p-2: 1 wanted, 0 available")
    assert sorted(e.product_id for e in published if isinstance(e, StockReleased)) == ["p-1", "p-2"]


def test_a_late_reservation_for_a_cancelled_order_is_released_at_once() -> None:
    state, published = run([ORDER, sample("OrderCancellationRequested"), reserved("p-1")])
    assert state is not None
    assert state["status"] == "cancelled"
    releases = [e for e in published if isinstance(e, StockReleased)]
    assert [e.product_id for e in releases] == ["p-1", "p-2", "p-1"]


@pytest.mark.parametrize(
    ("event", "reason"),
    [(sample("PaymentFailed"), "payment-failed"), (sample("OrderPricingFailed"), "not-priceable")],
)
def test_failures_cancel_with_their_reason(event: Event, reason: str) -> None:
    state, published = run([ORDER, reserved("p-1"), reserved("p-2"), sample("OrderPriced"), event])
    assert state is not None
    assert state["status"] == "cancelled"
    assert next(e for e in published if isinstance(e, OrderCancelled)).reason == reason


def test_the_deadline_expires_an_unpaid_order_only_when_due() -> None:
    state, _ = run([ORDER, reserved("p-1"), reserved("p-2"), sample("OrderPriced")])
    deadline = sample("PaymentDeadlinePassed")
    early, nothing = step(state, deadline, NOW + TIMEOUT / 2, TIMEOUT)
    assert (early or {}).get("status") == "awaiting-payment"
    assert nothing == []
    expired, published = step(state, deadline, NOW + TIMEOUT, TIMEOUT)
    assert expired is not None
    assert expired["status"] == "expired"
    assert kinds(published) == ["OrderExpired", "StockReleased", "StockReleased"]
    assert isinstance(published[0], OrderExpired)


def test_final_states_stick() -> None:
    state, _ = run(
        [
            ORDER,
            reserved("p-1"),
            reserved("p-2"),
            sample("OrderPriced"),
            sample("PaymentAuthorized"),
        ]
    )
    for event in (
        sample("PaymentFailed"),
        sample("OrderCancellationRequested"),
        sample("PaymentDeadlinePassed"),
    ):
        after, published = step(state, event, NOW + TIMEOUT * 2, TIMEOUT)
        assert after is not None
        assert after["status"] == "confirmed"
        assert published == []


def test_redelivered_events_publish_the_same_ids_and_change_nothing() -> None:
    events = [ORDER, reserved("p-1"), sample("OrderPriced"), reserved("p-2")]
    state, first = run(events)
    again, second = run([*events, *events])
    assert again == state
    assert {e.event_id for e in second} == {e.event_id for e in first}
    assert not any(isinstance(e, OrderStockReserved) for e in second[len(first) :])


def test_an_order_created_again_while_reserving_asks_again_for_unanswered_lines() -> None:
    state, _ = run([ORDER, reserved("p-1")])
    _, asks = step(state, ORDER, NOW, TIMEOUT)
    assert [e.product_id for e in asks if isinstance(e, StockReservationRequested)] == ["p-2"]
    other = OrderCreated.model_validate(ORDER.model_dump() | {"event_id": "another"})
    assert step(state, other, NOW, TIMEOUT)[1] == []


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
