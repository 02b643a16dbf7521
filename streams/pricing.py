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

from schemas import OrderCreated, OrderPriced, OrderPricingFailed
from schemas.errors import NotPriceable
from schemas.rules.pricing import price_order
from streams.flow import Flow, Records, derived_id
from streams.reference import Reference


def register(app: faust.App, flow: Flow, reference: Reference) -> None:
    """Add the pricing agent to the app."""

    @app.task
    async def follow_reference_data() -> None:
        await asyncio.to_thread(reference.start)

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
    priced_id = derived_id(order.event_id, "priced")
    try:
        return price_order(reference, order, priced_id)
    except NotPriceable:
        await asyncio.to_thread(reference.wait_until_current)
    try:
        return price_order(reference, order, priced_id)
    except NotPriceable as error:
        return OrderPricingFailed(
            event_id=derived_id(order.event_id, "pricing-failed"),
            order_id=order.order_id,
            reason=str(error),
        )
