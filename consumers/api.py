"""The query API (`ecom serve query`): answers from the view database only, never Kafka.

Every answer is `{"data": ..., "freshness": {projection: {generation, offsets, lag,
event_time}}}`; lists are paged with `limit` and `after` (the `next` of the previous
page).

Reads are sub-millisecond SQLite/PostgreSQL point queries, so the endpoints run them
on the event loop (no thread hop) and send orjson-encoded bodies without a second
pass through FastAPI's encoder: that is what keeps HTTP p99 within a few ms.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, Response

from consumers.health import readiness
from consumers.live import PAGE, Live
from consumers.queries import MAX_PAGE, QueryView
from consumers.store import Store
from ecom.apikeys import MAX_BODY_BYTES, ApiKeys, protect
from ecom.metrics import instrument
from ecom.settings import Settings, get_settings

Limit = Query(50, ge=1, le=MAX_PAGE, description="Items per page.")
After = Query(None, description="The `next` value of the previous page.")


def create_app(
    store: Store,
    api_keys: ApiKeys,
    max_body: int = MAX_BODY_BYTES,
    settings: Settings | None = None,
    live: Live | None = None,
) -> FastAPI:
    """Build the query API over one view database, open to `queries` keys; with live,
    the live page at / and its numbers at /live."""
    settings = settings or get_settings()
    view = QueryView(store)
    app = FastAPI(
        title="ecomstream query view",
        description="Orders, products, prices, taxes and stock, as the projections built "
        "them. Every answer says how fresh it is.",
    )
    protect(app, api_keys, "queries", max_body)
    instrument(app, "query-api")

    def found(answer: dict[str, Any] | None, what: str) -> Response:
        if answer is not None and answer["data"] is None:
            detail = {
                "detail": f"{what} is not in the view (yet)",
                "freshness": answer["freshness"],
            }
            return _json(detail, 404)
        return _json(answer)

    @app.get("/orders/{order_id}", tags=["orders"])
    async def get_order(order_id: str) -> Response:
        """One order: status, timeline, lines, totals with taxes, payment."""
        return found(view.order(order_id), f"order {order_id}")

    @app.get("/orders", tags=["orders"])
    async def list_orders(
        status: str | None = None, after: str | None = After, limit: int = Limit
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
        return found(view.product(product_id), f"product {product_id}")

    @app.get("/inventory/{product_id}", tags=["inventory"])
    async def get_inventory(product_id: str) -> Response:
        """A product's stock: on hand, reserved, available, sold."""
        return found(view.inventory(product_id), f"stock of {product_id}")

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

    return app


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
