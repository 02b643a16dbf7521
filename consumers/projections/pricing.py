"""Pricing: per product the price in force, its tax category and its price history;
tax rates per country and category."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from consumers.projection import Projection, Row, RowKey, Table, columns
from schemas import Event, PriceChanged, ProductCreated, ProductUpdated, TaxRateChanged

PriceEntry = tuple[str, int, str]  # (when, amount in minor units, currency)


@dataclass(frozen=True)
class Price(Row):
    """A product's price in force, tax category and price history."""

    TABLE: ClassVar[Table] = Table(
        "prices",
        ("product_id",),
        columns(
            product_id="TEXT",
            price_minor="BIGINT",
            currency="TEXT",
            category="TEXT",
            history="TEXT",
        ),
    )
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset({"history"})

    product_id: str
    price_minor: int | None = None
    currency: str | None = None
    category: str | None = None
    history: tuple[PriceEntry, ...] = ()


@dataclass(frozen=True)
class TaxRates(Row):
    """A country's tax rates by product category, in basis points."""

    TABLE: ClassVar[Table] = Table("tax_rates", ("country",), columns(country="TEXT", rates="TEXT"))
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset({"rates"})

    country: str
    rates: Mapping[str, int] = field(default_factory=dict)


class Pricing(Projection):
    """Prices, tax categories and tax rates."""

    name = "pricing"
    topics = ("pricing", "products")
    row_types = (Price, TaxRates)
    partition_local = True  # rows keyed by the record key

    def keys(self, event: Event) -> list[RowKey]:
        if isinstance(event, TaxRateChanged):
            return [(TaxRates, (event.country,))]
        if isinstance(event, (PriceChanged, ProductCreated, ProductUpdated)):
            return [(Price, (event.product_id,))]
        return []

    def evolve(self, rows: dict[RowKey, Row | None], event: Event) -> dict[RowKey, Row]:
        ((key, row),) = rows.items()
        if isinstance(event, TaxRateChanged):
            rates = row if isinstance(row, TaxRates) else TaxRates(event.country)
            return {key: rates.changed(rates={**rates.rates, event.category: event.rate_bp})}
        price = row if isinstance(row, Price) else Price(key[1][0])
        if isinstance(event, PriceChanged):
            entry = (event.occurred_at.isoformat(), event.price.amount_minor, event.price.currency)
            updated = price.changed(
                price_minor=event.price.amount_minor,
                currency=event.price.currency,
                history=(*price.history, entry),
            )
            return {key: updated}
        if isinstance(event, (ProductCreated, ProductUpdated)) and event.category is not None:
            return {key: price.changed(category=event.category)}
        return {}
