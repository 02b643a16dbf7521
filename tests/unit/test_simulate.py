"""The shop simulator: deterministic, valid, and internally consistent."""

from __future__ import annotations

from collections import Counter

from producers.simulate import Shop, ShopPlan
from schemas import (
    Codec,
    Event,
    OrderCancellationRequested,
    OrderCreated,
    ProductCreated,
    UserCreated,
)

PLAN = ShopPlan(users=20, products=10, orders=300, seed=42, cancel_share=0.2)


def _without_time(events: list[Event]) -> list[dict[str, object]]:
    return [e.model_dump(exclude={"occurred_at"}) for e in events]


def test_same_seed_same_events_other_seed_other_events() -> None:
    first = _without_time(list(Shop(PLAN).events()))
    assert first == _without_time(list(Shop(PLAN).events()))
    other = ShopPlan(users=20, products=10, orders=300, seed=43, cancel_share=0.2)
    assert first != _without_time(list(Shop(other).events()))


def test_counts_follow_the_plan() -> None:
    counts = Counter(e.event_type for e in Shop(PLAN).events())
    assert counts["UserCreated"] == 20
    assert counts["ProductCreated"] == counts["PriceChanged"] == counts["StockAdjusted"] == 10
    assert counts["OrderCreated"] == 300
    assert 30 <= counts["OrderCancellationRequested"] <= 90
    assert counts["TaxRateChanged"] == 24


def test_orders_refer_to_known_users_and_products_and_cancels_to_earlier_orders() -> None:
    users: set[str] = set()
    products: set[str] = set()
    orders: set[str] = set()
    for event in Shop(PLAN).events():
        if isinstance(event, UserCreated):
            users.add(event.user_id)
        elif isinstance(event, ProductCreated):
            products.add(event.product_id)
        elif isinstance(event, OrderCreated):
            assert event.user_id in users
            assert {line.product_id for line in event.lines} <= products
            orders.add(event.order_id)
        elif isinstance(event, OrderCancellationRequested):
            assert event.order_id in orders


def test_every_simulated_event_encodes() -> None:
    codec = Codec()
    for event in Shop(PLAN).events():
        assert codec.decode(codec.encode(event)) == event
