"""bench flow's arithmetic: where an order's time went, step by step."""

from __future__ import annotations

from bench.flow import _steps
from schemas import OrderCreated, OrderLine


def _order(order_id: str) -> OrderCreated:
    line = OrderLine(product_id="p-1", quantity=1)
    return OrderCreated(order_id=order_id, user_id="u-1", shipping_country="DE", currency="EUR",
                        lines=(line,))  # fmt: skip


def test_steps_are_p50_times_after_sending_sorted_by_time() -> None:
    orders = [_order("o-1"), _order("o-2"), _order("o-3")]
    sent = {"o-1": 10.0, "o-2": 20.0, "o-3": 30.0}
    steps = {
        "o-1": {"OrderCreated": 10.01, "OrderPriced": 10.3, "OrderConfirmed": 11.0},
        "o-2": {"OrderCreated": 20.03, "OrderPriced": 20.1, "OrderCancelled": 20.2},
        "o-3": {"OrderCreated": 30.02, "OrderPriced": 30.2, "OrderConfirmed": 31.0},
        "o-warm-up": {"OrderCreated": 1.0},  # not measured: never counted
    }
    assert list(_steps(orders, sent, steps).items()) == [
        ("OrderCreated", 20.0),
        ("OrderPriced", 200.0),
        ("OrderCancelled", 200.0),
        ("OrderConfirmed", 1000.0),
    ]
