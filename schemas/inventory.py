"""Inventory domain events: stock adjustments and the order flow's reservations.

Every event of one product lands on one partition of the inventory topic, so the log of
a product is a single ordered history that every reader folds the same way.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from schemas.base import Event, Id, Int32, Quantity

SignedQuantity = Annotated[int, Field(strict=True, ge=-1_000_000, le=1_000_000)]


class StockAdjusted(Event, domain="inventory"):
    """Stock was added (positive quantity) or removed (negative)."""

    product_id: Id
    quantity: SignedQuantity
    reason: str = Field(default="", max_length=200)

    @field_validator("quantity")
    @classmethod
    def _not_zero(cls, quantity: int) -> int:
        if quantity == 0:
            raise ValueError("must not be zero: positive adds stock, negative removes it")
        return quantity


class StockReservationRequested(Event, domain="inventory"):
    """The order flow asked to reserve units of a product for an order."""

    product_id: Id
    order_id: Id
    quantity: Quantity


class StockReserved(Event, domain="inventory"):
    """Units were reserved for an order."""

    product_id: Id
    order_id: Id
    quantity: Quantity


class StockReservationRejected(Event, domain="inventory"):
    """A reservation could not be served: not enough units available."""

    product_id: Id
    order_id: Id
    quantity: Quantity
    available: Int32


class StockReleased(Event, domain="inventory"):
    """An order's reservation was given back to the stock."""

    product_id: Id
    order_id: Id
    reason: str = Field(max_length=200)


class StockCommitted(Event, domain="inventory"):
    """An order's reserved units left the stock: the order was confirmed."""

    product_id: Id
    order_id: Id
