"""Pricing worker: prices each order with the prices and tax rates in force.

For every OrderCreated it looks up each line's price (in the order's currency), the
product's tax category, and the tax rate for the shipping country and that category,
and publishes OrderPriced with net, tax and total per line and for the order (tax is
rounded half up per line, in minor units). This is the "compute taxes" step of the old
synchronous design. When something is missing it first waits until its replica of the
pricing and products topics has read everything published so far (a price published
just before the order counts); if it is still missing, it publishes OrderPricingFailed.

State: none of its own; reference data comes from streams.reference.
"""

from __future__ import annotations

import asyncio

import faust
from faust.types import StreamT

from schemas import Money, OrderCreated, OrderPriced, OrderPricingFailed, PricedLine
from streams.flow import Flow, Records, derived_id
from streams.reference import Reference


class NotPriceable(Exception):
    """An order line lacks a price, a category or a tax rate."""


def register(app: faust.App, flow: Flow, reference: Reference) -> None:
    """Add the pricing agent to the app."""

    @app.task
    async def follow_reference_data() -> None:
        reference.start()

    @app.agent(flow.topic("orders"), name="pricing")
    async def price(stream: StreamT[bytes]) -> None:
        await flow.consume(stream, lambda records: _price_all(flow, reference, records))


async def _price_all(flow: Flow, reference: Reference, records: Records) -> None:
    for record in records:
        event = await flow.decode(record)
        if isinstance(event, OrderCreated):
            await flow.publish(await _price_or_fail(reference, event))


async def _price_or_fail(
    reference: Reference, order: OrderCreated
) -> OrderPriced | OrderPricingFailed:
    try:
        return price_order(reference, order)
    except NotPriceable:
        await asyncio.to_thread(reference.wait_until_current)
    try:
        return price_order(reference, order)
    except NotPriceable as error:
        return OrderPricingFailed(
            event_id=derived_id(order.event_id, "pricing-failed"),
            order_id=order.order_id,
            reason=str(error),
        )


def price_order(reference: Reference, order: OrderCreated) -> OrderPriced:
    """Price an order from the reference data; raise NotPriceable if something is missing."""
    lines = [_price_line(reference, order, line.product_id, line.quantity) for line in order.lines]
    net = sum(line.net_minor for line in lines)
    tax = sum(line.tax_minor for line in lines)
    currency = order.currency
    return OrderPriced(
        event_id=derived_id(order.event_id, "priced"),
        order_id=order.order_id,
        lines=tuple(lines),
        subtotal=Money(amount_minor=net, currency=currency),
        tax=Money(amount_minor=tax, currency=currency),
        total=Money(amount_minor=net + tax, currency=currency),
    )


def _price_line(
    reference: Reference, order: OrderCreated, product: str, quantity: int
) -> PricedLine:
    price = reference.prices.get(product)
    if price is None or price.currency != order.currency:
        raise NotPriceable(f"no price for {product} in {order.currency}")
    category = reference.categories.get(product)
    if category is None:
        raise NotPriceable(f"{product} has no tax category")
    rate = reference.rates.get((order.shipping_country, category))
    if rate is None:
        raise NotPriceable(f"no tax rate for {category} in {order.shipping_country}")
    net = price.amount_minor * quantity
    return PricedLine(
        product_id=product,
        quantity=quantity,
        unit_price_minor=price.amount_minor,
        tax_rate_bp=rate,
        net_minor=net,
        tax_minor=tax_of(net, rate),
    )


def tax_of(net_minor: int, rate_bp: int) -> int:
    """Return the tax on a net amount, rounded half up to a minor unit."""
    return (net_minor * rate_bp + 5_000) // 10_000
