"""Product (catalogue) domain events."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Category, Event, Id, Name


class ProductCreated(Event, domain="product"):
    """A product entered the catalogue; its category decides its tax rate."""

    product_id: Id
    name: Name
    category: Category
    description: str = Field(default="", max_length=2000)


class ProductUpdated(Event, domain="product"):
    """A product's details changed; None means unchanged."""

    product_id: Id
    name: Name | None = None
    category: Category | None = None
    description: str | None = Field(default=None, max_length=2000)
