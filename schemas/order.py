"""Order domain events: an order's life from creation to its final state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from schemas.base import (
    BasisPoints,
    Country,
    Currency,
    Event,
    Id,
    MinorUnits,
    Money,
    Quantity,
    UtcDatetime,
    Value,
)

CancelReason = Literal["user", "out-of-stock", "payment-failed", "not-priceable", "unknown-user"]
MAX_LINES = 100


class OrderLine(Value):
    """Units of one product in an order."""

    product_id: Id
    quantity: Quantity


class PricedLine(Value):
    """An order line with the price and tax rate in force when it was priced."""

    product_id: Id
    quantity: Quantity
    unit_price_minor: MinorUnits
    tax_rate_bp: BasisPoints
    net_minor: MinorUnits
    tax_minor: MinorUnits


class OrderCreated(Event, domain="order"):
    """A user placed an order."""

    order_id: Id
    user_id: Id
    lines: tuple[OrderLine, ...] = Field(min_length=1, max_length=MAX_LINES)
    shipping_country: Country
    currency: Currency

    @field_validator("lines")
    @classmethod
    def _one_line_per_product(cls, lines: tuple[OrderLine, ...]) -> tuple[OrderLine, ...]:
        products = [line.product_id for line in lines]
        if len(set(products)) != len(products):
            raise ValueError("each product may appear on one line only")
        return lines


class OrderCancellationRequested(Event, domain="order"):
    """The user asked to cancel an order (honoured unless it is already final)."""

    order_id: Id
    reason: str = Field(default="", max_length=200)


class OrderPricingFailed(Event, domain="order"):
    """The order could not be priced (no price in its currency, or no tax rate)."""

    order_id: Id
    reason: str = Field(min_length=1, max_length=500)


class PaymentDeadlinePassed(Event, domain="order"):
    """Internal to the order flow: an order's payment deadline has passed."""

    order_id: Id
    deadline: UtcDatetime


class OrderStockReserved(Event, domain="order"):
    """Every line of the order has its units reserved."""

    order_id: Id


class OrderPriced(Event, domain="order"):
    """The order was priced with the prices and tax rates in force."""

    order_id: Id
    lines: tuple[PricedLine, ...] = Field(min_length=1, max_length=MAX_LINES)
    subtotal: Money
    tax: Money
    total: Money


class OrderPaymentRequested(Event, domain="order"):
    """Stock and price are in: the order awaits payment until expires_at."""

    order_id: Id
    amount: Money
    expires_at: UtcDatetime


class OrderConfirmed(Event, domain="order"):
    """Stock reserved, priced and paid: the order is confirmed."""

    order_id: Id
    total: Money


class OrderCancelled(Event, domain="order"):
    """The order was cancelled; its reservations are released."""

    order_id: Id
    reason: CancelReason
    detail: str = Field(default="", max_length=500)


class OrderExpired(Event, domain="order"):
    """Payment did not arrive in time; the order's reservations are released."""

    order_id: Id
