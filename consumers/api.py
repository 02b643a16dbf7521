"""The query API (`ecom serve query`): answers from the view database only, never Kafka.

Every answer is `{"data": ..., "freshness": {projection: {generation, offsets, lag,
event_time}}}`; lists are paged with `limit` and `after` (the `next` of the previous
page).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from consumers.queries import MAX_PAGE, QueryView
from consumers.store import Store

Limit = Query(50, ge=1, le=MAX_PAGE, description="Items per page.")
After = Query(None, description="The `next` value of the previous page.")


def create_app(store: Store) -> FastAPI:
    """Build the query API over one view database."""
    view = QueryView(store)
    app = FastAPI(
        title="ecomstream query view",
        description="Orders, products, prices, taxes and stock, as the projections built "
        "them. Every answer says how fresh it is.",
    )

    def found(answer: dict[str, Any] | None, what: str) -> Any:
        if answer is not None and answer["data"] is None:
            detail = {
                "detail": f"{what} is not in the view (yet)",
                "freshness": answer["freshness"],
            }
            return JSONResponse(detail, status_code=404)
        return answer

    @app.get("/orders/{order_id}", tags=["orders"])
    def get_order(order_id: str) -> Any:
        """One order: status, timeline, lines, totals with taxes, payment."""
        return found(view.order(order_id), f"order {order_id}")

    @app.get("/orders", tags=["orders"])
    def list_orders(
        status: str | None = None, after: str | None = After, limit: int = Limit
    ) -> Any:
        """Orders, optionally with one status (created, priced, awaiting-payment, confirmed ...)."""
        return view.orders(status, after, limit)

    @app.get("/users/{user_id}/orders", tags=["orders"])
    def list_user_orders(user_id: str, after: str | None = After, limit: int = Limit) -> Any:
        """A user's orders."""
        return view.user_orders(user_id, after, limit)

    @app.get("/products", tags=["catalogue"])
    def list_products(after: str | None = After, limit: int = Limit) -> Any:
        """Products with price, tax rates and stock."""
        return view.products(after, limit)

    @app.get("/products/{product_id}", tags=["catalogue"])
    def get_product(product_id: str) -> Any:
        """A product with its price (and history), tax rates per country, and stock."""
        return found(view.product(product_id), f"product {product_id}")

    @app.get("/inventory/{product_id}", tags=["inventory"])
    def get_inventory(product_id: str) -> Any:
        """A product's stock: on hand, reserved, available, sold."""
        return found(view.inventory(product_id), f"stock of {product_id}")

    @app.get("/health", tags=["health"])
    def health() -> Any:
        """Every projection's generation, offsets, lag and newest event time."""
        return view.health()

    return app
