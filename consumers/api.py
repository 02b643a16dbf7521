"""The query API (`ecom serve query`): answers from the view database only, never Kafka.

Every answer is `{"data": ..., "freshness": {projection: {generation, offsets, lag,
event_time}}}`; lists are paged with `limit` and `after` (the `next` of the previous
page).

Reads are sub-millisecond SQLite/PostgreSQL point queries, so the endpoints run them
on the event loop (no thread hop) and send orjson-encoded bodies without a second
pass through FastAPI's encoder; the three point reads skip FastAPI's routing too
(PointReads): that is what keeps HTTP p99 within a few ms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute

from consumers.health import readiness
from consumers.live import PAGE, Live
from consumers.queries import MAX_PAGE, QueryView
from consumers.store import Store
from ecom.apikeys import MAX_BODY_BYTES, ApiKeys, protect
from ecom.asgi import Asgi, Receive, Scope, Send
from ecom.metrics import WITHOUT_OTEL, instrument
from ecom.settings import Settings, get_settings
from schemas.rules.order import RANK

Limit = Query(50, ge=1, le=MAX_PAGE, description="Items per page.")
Status = Query(None, pattern=f"^({'|'.join(RANK)})$", description="Only orders in this status.")
After = Query(None, description="The `next` value of the previous page.")


def create_app(
    store: Store,
    api_keys: ApiKeys,
    max_body: int = MAX_BODY_BYTES,
    settings: Settings | None = None,
    live: Live | None = None,
    point_reads: bool = True,
) -> FastAPI:
    """Build the query API over one view database, open to `queries` keys; with live,
    the live page at / and its numbers at /live. point_reads=False leaves the point
    reads to FastAPI too (tests compare the two)."""
    settings = settings or get_settings()
    view = QueryView(store)
    app = FastAPI(
        telemetry=WITHOUT_OTEL,
        title="ecomstream query view",
        description="Orders, products, prices, taxes and stock, as the projections built "
        "them. Every answer says how fresh it is.",
    )

    def found(answer: dict[str, Any] | None, what: str) -> Response:
        if answer is not None and answer["data"] is None:
            detail = {
                "detail": f"{what} is not in the view (yet)",
                "freshness": answer["freshness"],
            }
            return _json(detail, 404)
        return _json(answer)

    def order(order_id: str) -> Response:
        return found(view.order(order_id), f"order {order_id}")

    def product(product_id: str) -> Response:
        return found(view.product(product_id), f"product {product_id}")

    def stock(product_id: str) -> Response:
        return found(view.inventory(product_id), f"stock of {product_id}")

    @app.get("/orders/{order_id}", tags=["orders"])
    async def get_order(order_id: str) -> Response:
        """One order: status, timeline, lines, totals with taxes, payment."""
        return order(order_id)

    @app.get("/orders", tags=["orders"])
    async def list_orders(
        status: str | None = Status, after: str | None = After, limit: int = Limit
    ) -> Response:
        """Orders, optionally with one status (created, priced, awaiting-payment, confirmed ...)."""
        return _json(view.orders(status, after, limit))

    @app.get("/users/{user_id}/orders", tags=["orders"])
    async def list_user_orders(
        user_id: str, after: str | None = After, limit: int = Limit
    ) -> Response:
        """A user's orders."""
        return _json(view.user_orders(user_id, after, limit))

    @app.get("/products", tags=["catalogue"])
    async def list_products(after: str | None = After, limit: int = Limit) -> Response:
        """Products with price, tax rates and stock."""
        return _json(view.products(after, limit))

    @app.get("/products/{product_id}", tags=["catalogue"])
    async def get_product(product_id: str) -> Response:
        """A product with its price (and history), tax rates per country, and stock."""
        return product(product_id)

    @app.get("/inventory/{product_id}", tags=["inventory"])
    async def get_inventory(product_id: str) -> Response:
        """A product's stock: on hand, reserved, available, sold."""
        return stock(product_id)

    if live is not None:
        page = PAGE.read_text()

        @app.get("/", include_in_schema=False)
        async def live_page() -> HTMLResponse:
            """The shop, live (the page asks /live for its numbers with your key)."""
            return HTMLResponse(page)

        @app.get("/live", tags=["live"])
        async def live_numbers() -> Response:
            """What the live page shows: orders per status and over time, stock, every
            group's lag, dead letters, the newest events, time to an order's final state."""
            return _json(live.snapshot())

    @app.get("/livez", tags=["health"])
    async def livez() -> Response:
        """The process answers (nothing about the view: see /readyz)."""
        return _json({"status": "alive"})

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        """200 when the view is fit to serve; 503 with the reasons when a projection lags
        too long, its runner is gone, Kafka does not answer it, or the store is down."""
        reasons = readiness(store, settings)
        if reasons:
            return _json({"status": "not ready", "reasons": reasons}, 503)
        return _json({"status": "ready"})

    @app.get("/health", tags=["health"])
    async def health() -> Response:
        """Every projection's generation, offsets, lag and newest event time."""
        return _json(view.health())

    if point_reads:
        routes = {route.path: route for route in app.routes if isinstance(route, APIRoute)}
        reads = {
            "orders": (routes["/orders/{order_id}"], order),
            "products": (routes["/products/{product_id}"], product),
            "inventory": (routes["/inventory/{product_id}"], stock),
        }
        app.add_middleware(PointReads, reads=reads)  # added first: inside keys and metrics
    protect(app, api_keys, "queries", max_body)
    instrument(app, "query-api")
    return app


Answer = Callable[[str], Response]


class PointReads:
    """ASGI middleware: GET /orders/{id}, /products/{id} and /inventory/{id}, the reads
    clients make most, answered by the same functions as their routes but without
    FastAPI's routing and parameter handling, which cost more CPU than the read itself.
    Anything else, those paths with another method included, goes on to FastAPI."""

    def __init__(self, app: Asgi, reads: dict[str, tuple[APIRoute, Answer]]) -> None:
        self.app, self.reads = app, reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self._match(scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        route, answer, entity = match
        scope["route"] = route  # the template the request metrics count by
        await answer(entity)(scope, receive, send)

    def _match(self, scope: Scope) -> tuple[APIRoute, Answer, str] | None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        parts = scope["path"].split("/")  # "", the collection, the id: as {param} matches
        if len(parts) != 3 or not parts[2] or parts[1] not in self.reads:
            return None
        route, answer = self.reads[parts[1]]
        return route, answer, parts[2]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
