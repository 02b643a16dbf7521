"""How an order is priced: each line's price in the order's currency, the tax rate of
the shipping country and the product's tax category, tax rounded half up per line.

The pricing worker prices orders with these rules from its replica of the pricing and
products topics; anything that cannot be priced (a missing price, category or rate, or
an amount too large for the contract) raises NotPriceable, which the worker publishes
as OrderPricingFailed: a business outcome, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from schemas.base import MAX_MINOR_UNITS, Money
from schemas.errors import NotPriceable
from schemas.order import OrderCreated, OrderPriced, PricedLine


@dataclass(frozen=True)
class Price:
    """A product's price in force."""

    amount_minor: int
    currency: str


class PriceBook(Protocol):
    """Reference data as known at a point in time."""

    def price(self, product_id: str, at: datetime) -> Price | None: ...
    def category(self, product_id: str, at: datetime) -> str | None: ...
    def tax_rate(self, country: str, category: str, at: datetime) -> int | None: ...


@dataclass
class Book:
    """A price book without history: what is in it holds at any time."""

    prices: dict[str, Price] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)
    rates: dict[tuple[str, str], int] = field(default_factory=dict)

    def price(self, product_id: str, at: datetime) -> Price | None:
        return self.prices.get(product_id)

    def category(self, product_id: str, at: datetime) -> str | None:
        return self.categories.get(product_id)

    def tax_rate(self, country: str, category: str, at: datetime) -> int | None:
        return self.rates.get((country, category))


def tax_of(net_minor: int, rate_bp: int) -> int:
    """Return the tax on a net amount, rounded half up to a minor unit."""
    return (net_minor * rate_bp + 5_000) // 10_000


def price_order(book: PriceBook, order: OrderCreated, event_id: str) -> OrderPriced:
    """Price an order as of its creation; raise NotPriceable if it cannot be."""
    lines = [_price_line(book, order, line.product_id, line.quantity) for line in order.lines]
    net = sum(line.net_minor for line in lines)
    tax = sum(line.tax_minor for line in lines)
    _check_amount(net + tax, "the order total")
    currency = order.currency
    return OrderPriced(
        event_id=event_id,
        occurred_at=order.occurred_at,  # decided as of the order: the same every time
        order_id=order.order_id,
        lines=tuple(lines),
        subtotal=Money(amount_minor=net, currency=currency),
        tax=Money(amount_minor=tax, currency=currency),
        total=Money(amount_minor=net + tax, currency=currency),
    )


def _price_line(book: PriceBook, order: OrderCreated, product: str, quantity: int) -> PricedLine:
    at = order.occurred_at
    price = book.price(product, at)
    if price is None or price.currency != order.currency:
        raise NotPriceable(f"no price for {product} in {order.currency}")
    category = book.category(product, at)
    if category is None:
        raise NotPriceable(f"{product} has no tax category")
    rate = book.tax_rate(order.shipping_country, category, at)
    if rate is None:
        raise NotPriceable(f"no tax rate for {category} in {order.shipping_country}")
    net = price.amount_minor * quantity
    tax = tax_of(net, rate)
    _check_amount(net + tax, f"{quantity} x {product}")
    return PricedLine(
        product_id=product,
        quantity=quantity,
        unit_price_minor=price.amount_minor,
        tax_rate_bp=rate,
        net_minor=net,
        tax_minor=tax,
    )


def _check_amount(amount_minor: int, what: str) -> None:
    if amount_minor > MAX_MINOR_UNITS:
        raise NotPriceable(f"{what} comes to {amount_minor} minor units, over the limit")
