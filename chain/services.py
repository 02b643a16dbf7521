"""The four services of the synchronous chain, each a FastAPI app in its own process.

    POST /orders (orders) -> POST /reservations per line (inventory)
                          -> POST /quotes (pricing)
                          -> POST /charges (payment)
                          -> POST /reservations/commit or /release (inventory)

The orders service answers with the order's final state (confirmed, or cancelled with a
reason), or 503 when a service it calls is down or too slow: the client learns the
outcome in the answer, and nothing is left half-done (reserved units are released).
Inventory keeps its stock in SQLite, so a restart loses nothing; pricing and inventory
load the shop's reference data (the same seeded plan as the event flow's).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from ecom.gateway import Charge, Gateway
from ecom.metrics import WITHOUT_OTEL
from ecom.settings import Settings
from schemas import (
    Event,
    OrderCreated,
    PriceChanged,
    ProductCreated,
    StockAdjusted,
    StockCommitted,
    StockReleased,
    StockReservationRequested,
    TaxRateChanged,
)
from schemas.errors import NotPriceable
from schemas.rules.pricing import Book, Price, price_order
from schemas.rules.stock import StockLevel, apply_stock

SERVICES = ("inventory", "pricing", "payment", "orders")
CALL_TIMEOUT_S = 2.0  # each hop's timeout: the chain is only as patient as this


class Reservation(BaseModel):
    order_id: str
    product_id: str
    quantity: int = 0


class ChargeRequest(BaseModel):
    order_id: str
    amount_minor: int
    currency: str


# -- inventory -------------------------------------------------------------------------


class StockBook:
    """Stock per product in SQLite, changed by the stock rules one request at a time."""

    def __init__(self, path: Path, initial: Iterable[StockAdjusted]) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS stock (product_id TEXT PRIMARY KEY, level TEXT)"
        )
        with self._lock:
            for event in initial:  # a restarted service keeps what it had
                self._db.execute(
                    "INSERT OR IGNORE INTO stock VALUES (?, ?)",
                    (event.product_id, _dump(apply_stock(StockLevel(), event)[0])),
                )

    def apply(self, product_id: str, event: Event) -> bool:
        """Apply a stock event to a product; tell whether a reservation was granted."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT level FROM stock WHERE product_id = ?", (product_id,)
                ).fetchone()
                level = _load(row[0]) if row else StockLevel()
                changed, decision = apply_stock(level, event)
                self._db.execute(
                    "INSERT OR REPLACE INTO stock VALUES (?, ?)", (product_id, _dump(changed))
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return decision is None or decision.reserved


def _dump(level: StockLevel) -> str:
    return json.dumps({**asdict(level), "reservations": dict(level.reservations)})


def _load(text: str) -> StockLevel:
    return StockLevel(**json.loads(text))


def inventory_app(book: StockBook) -> FastAPI:
    app = _app("inventory")

    @app.post("/reservations")
    def reserve(asked: Reservation) -> dict[str, bool]:
        event = StockReservationRequested(**asked.model_dump())
        return {"reserved": book.apply(asked.product_id, event)}

    @app.post("/reservations/release")
    def release(held: Reservation) -> dict[str, bool]:
        event = StockReleased(order_id=held.order_id, product_id=held.product_id, reason="chain")
        return {"released": book.apply(held.product_id, event)}

    @app.post("/reservations/commit")
    def commit(held: Reservation) -> dict[str, bool]:
        event = StockCommitted(order_id=held.order_id, product_id=held.product_id)
        return {"committed": book.apply(held.product_id, event)}

    return app


# -- pricing ---------------------------------------------------------------------------


def price_book(events: Iterable[Event]) -> Book:
    """The prices, categories and tax rates the reference events set."""
    book = Book()
    for event in events:
        if isinstance(event, PriceChanged):
            book.prices[event.product_id] = Price(event.price.amount_minor, event.price.currency)
        elif isinstance(event, ProductCreated):
            book.categories[event.product_id] = event.category
        elif isinstance(event, TaxRateChanged):
            book.rates[(event.country, event.category)] = event.rate_bp
    return book


def pricing_app(book: Book) -> FastAPI:
    app = _app("pricing")

    @app.post("/quotes")
    def quote(order: OrderCreated) -> dict[str, Any]:
        try:
            priced = price_order(book, order, order.event_id)
        except NotPriceable as error:
            raise HTTPException(422, str(error)) from None
        return {"total_minor": priced.total.amount_minor, "currency": priced.total.currency}

    return app


# -- payment ---------------------------------------------------------------------------


def payment_app(gateway: Gateway) -> FastAPI:
    app = _app("payment")

    @app.post("/charges")
    async def charge(asked: ChargeRequest) -> dict[str, bool]:
        key = f"chain-{asked.order_id}"
        answers = await gateway.authorize([Charge(key, **asked.model_dump())])
        return {"authorized": answers[key]}

    return app


# -- orders ----------------------------------------------------------------------------


class Unavailable(Exception):
    """A service the orders service calls did not answer in time, or failed."""


class Refused(Exception):
    """A service the orders service calls said no to the request itself (4xx)."""


def orders_app(urls: dict[str, str]) -> FastAPI:
    """The front door: one blocking call after the other, the order's fate in the answer."""
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for name in ("inventory", "pricing", "payment"):
            clients[name] = httpx.AsyncClient(base_url=urls[name], timeout=CALL_TIMEOUT_S)
        yield
        for client in clients.values():
            await client.aclose()

    app = _app("orders", lifespan)

    async def call(service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await clients[service].post(path, json=body)
        except httpx.HTTPError as error:
            raise Unavailable(f"{service}: {type(error).__name__}") from None
        if answer.status_code >= 500:
            raise Unavailable(f"{service}: {answer.status_code}")
        if answer.status_code >= 400:
            raise Refused(f"{service} refused: {answer.json().get('detail', answer.status_code)}")
        result: dict[str, Any] = answer.json()
        return result

    async def settle(order: OrderCreated, held: list[str], how: str) -> None:
        for product_id in held:
            body = {"order_id": order.order_id, "product_id": product_id}
            # The chain's weak spot: if inventory is gone now, the hold stays behind.
            with contextlib.suppress(Unavailable):
                await call("inventory", f"/reservations/{how}", body)

    @app.post("/orders")
    async def create(order: OrderCreated) -> dict[str, Any]:
        held: list[str] = []
        try:
            outcome = await decide(order, held)
        except (Unavailable, Refused) as error:
            await settle(order, held, "release")
            if isinstance(error, Refused):  # e.g. no price: a business outcome, as in the flow
                return {"order_id": order.order_id, "status": "cancelled", "reason": str(error)}
            raise HTTPException(503, f"cannot take the order now: {error}") from None
        await settle(order, held, "commit" if outcome["status"] == "confirmed" else "release")
        return outcome

    async def decide(order: OrderCreated, held: list[str]) -> dict[str, Any]:
        """Reserve every line, price, charge: the order's fate (holds noted in `held`)."""
        answer: dict[str, Any] = {"order_id": order.order_id, "status": "cancelled"}
        for line in order.lines:
            body = {"order_id": order.order_id, **line.model_dump()}
            if not (await call("inventory", "/reservations", body))["reserved"]:
                return answer | {"reason": "out of stock"}
            held.append(line.product_id)
        quote = await call("pricing", "/quotes", order.model_dump(mode="json"))
        charge = {"order_id": order.order_id, "amount_minor": quote["total_minor"],
                  "currency": quote["currency"]}  # fmt: skip
        if not (await call("payment", "/charges", charge))["authorized"]:
            return answer | {"reason": "payment declined"}
        return answer | {"status": "confirmed", "total_minor": quote["total_minor"]}

    return app


def _app(name: str, lifespan: Any = None) -> FastAPI:
    app = FastAPI(
        telemetry=WITHOUT_OTEL, title=f"ecomstream synchronous chain: {name}", lifespan=lifespan
    )

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "alive", "service": name}

    return app


def build(service: str, reference: list[Event], home: Path, settings: Settings,
          urls: dict[str, str]) -> FastAPI:  # fmt: skip
    """Return one service's app, its data made from the shop's reference events."""
    if service == "inventory":
        stock = [e for e in reference if isinstance(e, StockAdjusted)]
        return inventory_app(StockBook(home / "chain-inventory.db", stock))
    if service == "pricing":
        return pricing_app(price_book(reference))
    if service == "payment":
        ledger = home / "chain-ledger.db"
        return payment_app(
            Gateway(ledger, settings.gateway_decline_share, settings.gateway_latency_ms)
        )
    return orders_app(urls)
