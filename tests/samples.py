"""One valid example of every event type, for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas import EVENT_TYPES, Event

MONEY = {"amount_minor": 1999, "currency": "EUR"}
SAMPLES: dict[str, dict[str, Any]] = {
    "UserCreated": {"user_id": "u-1", "email": "ada@example.com", "name": "Ada", "country": "DE"},
    "UserUpdated": {"user_id": "u-1", "name": "Ada L."},
    "ProductCreated": {"product_id": "p-1", "name": "Mug", "category": "standard"},
    "ProductUpdated": {"product_id": "p-1", "description": "A big mug"},
    "PriceChanged": {"product_id": "p-1", "price": MONEY},
    "TaxRateChanged": {"country": "DE", "category": "standard", "rate_bp": 1900},
    "StockAdjusted": {"product_id": "p-1", "quantity": 10, "reason": "delivery"},
    "StockReservationRequested": {"product_id": "p-1", "order_id": "o-1", "quantity": 2},
    "StockReserved": {"product_id": "p-1", "order_id": "o-1", "quantity": 2},
    "StockReservationRejected": {
        "product_id": "p-1", "order_id": "o-1", "quantity": 2, "available": 1,
    },
    "StockReleased": {"product_id": "p-1", "order_id": "o-1", "reason": "cancelled"},
    "StockCommitted": {"product_id": "p-1", "order_id": "o-1"},
    "OrderCreated": {
        "order_id": "o-1", "user_id": "u-1", "lines": [{"product_id": "p-1", "quantity": 2}],
        "shipping_country": "DE", "currency": "EUR",
    },
    "OrderCancellationRequested": {"order_id": "o-1", "reason": "changed mind"},
    "OrderStockReserved": {"order_id": "o-1"},
    "OrderPricingFailed": {"order_id": "o-1", "reason": "no price for p-1 in EUR"},
    "PaymentDeadlinePassed": {"order_id": "o-1", "deadline": datetime(2030, 1, 1, tzinfo=UTC)},
    "OrderPriced": {
        "order_id": "o-1",
        "lines": [{"product_id": "p-1", "quantity": 2, "unit_price_minor": 1999,
                   "tax_rate_bp": 1900, "net_minor": 3998, "tax_minor": 760}],
        "subtotal": {"amount_minor": 3998, "currency": "EUR"},
        "tax": {"amount_minor": 760, "currency": "EUR"},
        "total": {"amount_minor": 4758, "currency": "EUR"},
    },
    "OrderPaymentRequested": {
        "order_id": "o-1", "amount": {"amount_minor": 4758, "currency": "EUR"},
        "expires_at": datetime(2030, 1, 1, tzinfo=UTC),
    },
    "OrderConfirmed": {"order_id": "o-1", "total": {"amount_minor": 4758, "currency": "EUR"}},
    "OrderCancelled": {"order_id": "o-1", "reason": "out-of-stock", "detail": "p-1 short by 1"},
    "OrderExpired": {"order_id": "o-1"},
    "PaymentCreated": {"order_id": "o-1", "payment_id": "pay-1", "amount": MONEY},
    "PaymentAuthorized": {"order_id": "o-1", "payment_id": "pay-1", "authorization": "AUTH-1"},
    "PaymentFailed": {"order_id": "o-1", "payment_id": "pay-1", "reason": "declined"},
    "PaymentRefunded": {"order_id": "o-1", "payment_id": "pay-1", "reason": "order expired"},
}  # fmt: skip


def sample(event_type: str, **changes: Any) -> Event:
    """Return a valid event of the given type, with some fields changed."""
    return EVENT_TYPES[event_type].model_validate(SAMPLES[event_type] | changes)
