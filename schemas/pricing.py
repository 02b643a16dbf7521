"""Pricing domain events: prices per product, tax rates per country and category."""

from __future__ import annotations

from schemas.base import BasisPoints, Category, Country, Event, Id, Money


class PriceChanged(Event, domain="pricing"):
    """A product's price in force changed (tax excluded)."""

    product_id: Id
    price: Money


class TaxRateChanged(Event, domain="pricing"):
    """The tax rate for one country and product category changed."""

    country: Country
    category: Category
    rate_bp: BasisPoints
