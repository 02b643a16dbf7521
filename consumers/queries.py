"""The query view: what the query API and `ecom query` answer, from the view database only.

Every answer carries its freshness: per projection read, the generation, the offsets
the view reflects, the lag behind the log end the runner last saw, and the newest event
time applied. Rows and freshness come from one snapshot, so they agree. Lists are paged
by key (`after` the last key of the previous page), which stays stable while the view
changes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from consumers.projection import Row, Table
from consumers.projections.catalogue import Product, User
from consumers.projections.inventory import Stock
from consumers.projections.orders import Order
from consumers.projections.pricing import Price, TaxRates
from consumers.store import Store, table_name

Read = Callable[[str, Sequence[Any]], list[dict[str, Any]]]
MAX_PAGE = 500
OWNER = {
    Stock: "inventory",
    Price: "pricing",
    TaxRates: "pricing",
    Order: "orders",
    User: "catalogue",
    Product: "catalogue",
}


class QueryView:
    """Read-only queries over the view database."""

    def __init__(self, store: Store, pinned: dict[str, int] | None = None) -> None:
        self.store = store
        self.pinned = pinned or {}  # projection -> generation to read instead of the live one
        self._seen = threading.local()  # (version, freshness by projection) of this thread

    def _answer(
        self, read: Read, generations: dict[str, int], names: list[str], data: Any
    ) -> dict[str, Any]:
        return {"data": data, "freshness": self._freshness(read, generations, names)}

    def _freshness(
        self, read: Read, generations: dict[str, int], names: list[str]
    ) -> dict[str, Any]:
        """Freshness as _freshness reads it, kept while the database does not change: a
        read then spares one statement per projection it names, for one pragma."""
        version = self.store.version(read)
        if version is None:
            return _freshness(read, generations, names)
        seen = getattr(self._seen, "last", None)
        if seen is None or seen[0] != version:
            seen = self._seen.last = (version, {})
        known: dict[str, Any] = seen[1]
        missing = [name for name in names if name not in known]
        if missing:
            known.update(_freshness(read, generations, missing))
        return {name: known[name] for name in names}

    def _generations(self, read: Read) -> dict[str, int]:
        return _generations(read) | self.pinned

    # -- orders ------------------------------------------------------------------------

    def order(self, order_id: str) -> dict[str, Any] | None:
        """Return one order with its timeline, or None if the view has not seen it."""
        with self.store.snapshot() as read:
            generations = self._generations(read)
            rows = _select(read, generations, Order, "order_id = ?", [order_id])
            return self._answer(read, generations, ["orders"], _order(rows[0]) if rows else None)

    def orders(self, status: str | None, after: str | None, limit: int) -> dict[str, Any]:
        """Return a page of orders, optionally with one status."""
        where, params = _page_filter("order_id", after)
        if status:
            where, params = f"{where} AND status = ?", [*params, status]
        with self.store.snapshot() as read:
            generations = self._generations(read)
            rows = _select(read, generations, Order, where, params, "order_id", limit + 1)
            return self._answer(
                read, generations, ["orders"], _page(rows, limit, "order_id", _order)
            )

    def user_orders(self, user_id: str, after: str | None, limit: int) -> dict[str, Any]:
        """Return a user, if known, and a page of their orders."""
        where, params = _page_filter("order_id", after)
        with self.store.snapshot() as read:
            generations = self._generations(read)
            users = _select(read, generations, User, "user_id = ?", [user_id])
            rows = _select(
                read,
                generations,
                Order,
                f"{where} AND user_id = ?",
                [*params, user_id],
                "order_id",
                limit + 1,
            )
            page = _page(rows, limit, "order_id", _order)
            page["user"] = _plain(users[0]) if users else None
            return self._answer(read, generations, ["catalogue", "orders"], page)

    # -- products and stock ------------------------------------------------------------

    def product(self, product_id: str) -> dict[str, Any] | None:
        """Return a product with its price, tax rates for its category and its stock."""
        with self.store.snapshot() as read:
            generations = self._generations(read)
            products = _select(read, generations, Product, "product_id = ?", [product_id])
            product = self._with_price_and_stock(read, generations, products)
            return self._answer(
                read,
                generations,
                ["catalogue", "pricing", "inventory"],
                product[0] if product else None,
            )

    def products(self, after: str | None, limit: int) -> dict[str, Any]:
        """Return a page of products with prices and stock."""
        where, params = _page_filter("product_id", after)
        with self.store.snapshot() as read:
            generations = self._generations(read)
            rows = _select(read, generations, Product, where, params, "product_id", limit + 1)
            page = _page(rows, limit, "product_id", lambda r: r)
            page["items"] = self._with_price_and_stock(read, generations, page["items"])
            return self._answer(read, generations, ["catalogue", "pricing", "inventory"], page)

    def inventory(self, product_id: str) -> dict[str, Any] | None:
        """Return a product's stock."""
        with self.store.snapshot() as read:
            generations = self._generations(read)
            rows = _select(read, generations, Stock, "product_id = ?", [product_id])
            return self._answer(read, generations, ["inventory"], _stock(rows[0]) if rows else None)

    def _with_price_and_stock(
        self, read: Read, generations: dict[str, int], products: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if not products:
            return []
        ids = [p["product_id"] for p in products]
        marks = ", ".join("?" for _ in ids)
        prices = {
            r["product_id"]: r
            for r in _select(read, generations, Price, f"product_id IN ({marks})", ids)
        }
        stock = {
            r["product_id"]: r
            for r in _select(read, generations, Stock, f"product_id IN ({marks})", ids)
        }
        rates = [
            (r["country"], json.loads(r["rates"]))
            for r in _select(read, generations, TaxRates, "1 = 1", [])
        ]
        result = []
        for product in products:
            item = _plain(product)
            price = prices.get(product["product_id"])
            category = (price or {}).get("category") or product.get("category")
            item["price"] = _price(price)
            item["tax_rates_bp"] = {
                country: table[category] for country, table in rates if category in table
            }
            item["stock"] = (
                _stock(stock[product["product_id"]]) if product["product_id"] in stock else None
            )
            result.append(item)
        return result

    # -- the live page -------------------------------------------------------------------

    def shop(self, products: int) -> dict[str, Any]:
        """Return orders per status, how many products have stock rows and the stock of
        the first ones, and every projection's lag: what the live page shows."""
        with self.store.snapshot() as read:
            generations = self._generations(read)
            statuses: dict[str, int] = {}
            generation = generations.get("orders")
            if generation is not None:
                table = table_name(Order.TABLE, generation)
                # A view built before events of unknown orders were ignored may hold such
                # rows, without a status.
                counted = f"SELECT status, COUNT(*) AS n FROM {table} WHERE status IS NOT NULL"
                for row in read(f"{counted} GROUP BY status", []):
                    statuses[row["status"]] = int(row["n"])
            stock = _select(read, generations, Stock, "1 = 1", [], "product_id", products)
            lags = self._freshness(read, generations, sorted(generations))
            return {
                "orders": statuses,
                "products": _count(read, generations, Stock),
                "stock": [
                    {k: r[k] for k in ("product_id", "available", "reserved", "sold")}
                    for r in stock
                ],
                "projections": {name: info["lag"] for name, info in lags.items()},
            }

    # -- health --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return every projection's generation, offsets, lag and newest event time."""
        with self.store.snapshot() as read:
            generations = self._generations(read)
            return {
                "status": "ok",
                "projections": self._freshness(read, generations, sorted(generations)),
            }


def _generations(read: Read) -> dict[str, int]:
    return {r["projection"]: int(r["generation"]) for r in read("SELECT * FROM ecom_views", [])}


def _count(read: Read, generations: dict[str, int], row_type: type[Row]) -> int:
    generation = generations.get(OWNER[row_type])
    if generation is None:
        return 0
    table = table_name(row_type.TABLE, generation)
    return int(read(f"SELECT COUNT(*) AS n FROM {table}", [])[0]["n"])


def _select(
    read: Read,
    generations: dict[str, int],
    row_type: type[Row],
    where: str,
    params: Sequence[Any],
    order: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    generation = generations.get(OWNER[row_type])
    if generation is None:
        return []
    table: Table = row_type.TABLE
    statement = f"SELECT * FROM {table_name(table, generation)} WHERE {where}"
    if order:
        statement += f" ORDER BY {order}"
    if limit:
        statement += f" LIMIT {int(limit)}"
    return read(statement, params)


def _page_filter(column: str, after: str | None) -> tuple[str, list[Any]]:
    return (f"{column} > ?", [after]) if after else ("1 = 1", [])


def _page(
    rows: list[dict[str, Any]],
    limit: int,
    key: str,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    items = rows[:limit]
    more = len(rows) > limit
    return {"items": [shape(r) for r in items], "next": items[-1][key] if more and items else None}


def _freshness(read: Read, generations: dict[str, int], names: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in names:
        generation = generations.get(name)
        if generation is None:
            result[name] = {"generation": None, "offsets": {}, "lag": None, "event_time": None}
            continue
        rows = read(
            "SELECT * FROM ecom_offsets WHERE projection = ? AND generation = ?", [name, generation]
        )
        offsets = {f"{r['topic']}/{r['kafka_partition']}": r["next_offset"] for r in rows}
        lags = [
            max(0, r["high_watermark"] - r["next_offset"])
            for r in rows
            if r["high_watermark"] is not None
        ]
        times = [r["event_time"] for r in rows if r["event_time"]]
        result[name] = {
            "generation": generation,
            "offsets": offsets,
            "lag": sum(lags) if lags else None,
            "event_time": max(times, default=None),
        }
    return result


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("applied",)}


def _order(record: dict[str, Any]) -> dict[str, Any]:
    order = _plain(record)
    order["lines"] = [{"product_id": p, "quantity": q} for p, q in json.loads(record["lines"])]
    order["priced_lines"] = [
        dict(
            zip(
                (
                    "product_id",
                    "quantity",
                    "unit_price_minor",
                    "tax_rate_bp",
                    "net_minor",
                    "tax_minor",
                ),
                line,
                strict=True,
            )
        )
        for line in json.loads(record["priced_lines"])
    ]
    order["payment"] = json.loads(record["payment"])
    order["timeline"] = [
        {"at": at, "step": step, "detail": detail, "event_id": event_id}
        for at, step, detail, event_id in json.loads(record["timeline"])
    ]
    return order


def _stock(record: dict[str, Any]) -> dict[str, Any]:
    stock = _plain(record)
    stock["reservations"] = json.loads(record["reservations"])
    return stock


def _price(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    price = _plain(record)
    price["history"] = [
        {"at": at, "amount_minor": amount, "currency": currency}
        for at, amount, currency in json.loads(record["history"])
    ]
    return price
