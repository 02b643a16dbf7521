"""Order queries over a view that holds what older code wrote, and a status filter that
names no status."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from consumers.api import create_app
from consumers.projections import PROJECTIONS
from consumers.projections.orders import Order
from consumers.queries import QueryView
from consumers.store import OffsetRow, open_store
from ecom.metrics import REGISTRY
from tests.support import keyed


def test_the_live_page_counts_orders_a_row_without_status_left_out(tmp_path: Path) -> None:
    """Views built before events of unknown orders were ignored hold rows without a
    status: the live page's counts skip them instead of failing."""
    with open_store(f"sqlite:///{tmp_path / 'view.db'}") as store:
        store.create_generation(PROJECTIONS["orders"], 1, "active")
        rows = [Order("o-1", user_id="u-1", status="created"), Order("o-2")]
        store.commit("orders", 1, rows, [OffsetRow("orders", 0, 2, 2)])
        assert QueryView(store).shop(5)["orders"] == {"created": 1}


def test_a_status_filter_naming_no_status_is_refused(tmp_path: Path) -> None:
    keys, auth = keyed("queries")
    with (
        open_store(f"sqlite:///{tmp_path / 'view.db'}") as store,
        TestClient(create_app(store, keys), headers=auth) as client,
    ):
        assert client.get("/orders?status=confirmed").status_code == 200
        refused = client.get("/orders?status=bogus")
        assert refused.status_code == 422
        assert "status" in refused.text


def test_a_request_refused_for_its_key_is_counted_by_its_route(tmp_path: Path) -> None:
    labels = {"method": "GET", "route": "/orders/{order_id}", "service": "query-api",
              "status": "401"}  # fmt: skip
    before = REGISTRY.get_sample_value("ecom_http_requests_total", labels) or 0.0
    keys, _ = keyed("queries")
    with (
        open_store(f"sqlite:///{tmp_path / 'view.db'}") as store,
        TestClient(create_app(store, keys)) as client,
    ):
        assert client.get("/orders/o-1").status_code == 401, "no key"
    assert REGISTRY.get_sample_value("ecom_http_requests_total", labels) == before + 1
