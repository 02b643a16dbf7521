"""Catalogue: users and products as the query view shows them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from consumers.projection import Projection, Row, RowKey, Table, columns
from schemas import Event, ProductCreated, ProductUpdated, UserCreated, UserUpdated


@dataclass(frozen=True)
class User(Row):
    """A shop user."""

    TABLE: ClassVar[Table] = Table(
        "users",
        ("user_id",),
        columns(user_id="TEXT", email="TEXT", name="TEXT", country="TEXT", created_at="TEXT"),
    )
    DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("created_at",)

    user_id: str
    email: str | None = None
    name: str | None = None
    country: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Product(Row):
    """A catalogue product."""

    TABLE: ClassVar[Table] = Table(
        "products",
        ("product_id",),
        columns(
            product_id="TEXT", name="TEXT", category="TEXT", description="TEXT", created_at="TEXT"
        ),
    )
    DATETIME_FIELDS: ClassVar[tuple[str, ...]] = ("created_at",)

    product_id: str
    name: str | None = None
    category: str | None = None
    description: str | None = None
    created_at: datetime | None = None


class Catalogue(Projection):
    """Users and products."""

    name = "catalogue"
    topics = ("users", "products")
    row_types = (User, Product)
    partition_local = True  # rows keyed by the record key

    def keys(self, event: Event) -> list[RowKey]:
        if isinstance(event, (UserCreated, UserUpdated)):
            return [(User, (event.user_id,))]
        if isinstance(event, (ProductCreated, ProductUpdated)):
            return [(Product, (event.product_id,))]
        return []

    def evolve(self, rows: dict[RowKey, Row | None], event: Event) -> dict[RowKey, Row]:
        ((key, row),) = rows.items()
        if isinstance(event, (UserCreated, UserUpdated)):
            user = row if isinstance(row, User) else User(event.user_id)
            changes = _given(event, "email", "name", "country")
            if isinstance(event, UserCreated):
                changes["created_at"] = event.occurred_at
            return {key: user.changed(**changes)}
        assert isinstance(event, (ProductCreated, ProductUpdated))
        product = row if isinstance(row, Product) else Product(event.product_id)
        changes = _given(event, "name", "category", "description")
        if isinstance(event, ProductCreated):
            changes["created_at"] = event.occurred_at
        return {key: product.changed(**changes)}


def _given(event: Event, *names: str) -> dict[str, Any]:
    """Return the named fields the event sets (updates leave None fields unchanged)."""
    return {name: value for name in names if (value := getattr(event, name)) is not None}
