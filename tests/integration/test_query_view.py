"""The query view over real projections, through the API and the CLI, on both stores."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consumers.api import PointReads, create_app
from consumers.live import PRODUCTS_SHOWN, Live, order_watch
from consumers.projections import PROJECTIONS
from consumers.queries import QueryView
from consumers.store import open_store
from ecom.kafka import scratch_topology
from ecom.kafka.watch import KEEP
from ecom.topology import Topology
from schemas import Event, OrderCreated, ProductCreated
from tests.conftest import KafkaCluster
from tests.postgres import create_database
from tests.runners import run_until_caught_up, shop_log
from tests.support import REPO, keyed, run_cli, unique, wait_for

pytestmark = pytest.mark.kafka


@dataclass
class Shop:
    events: list[Event]
    store_url: str
    client: TestClient
    topology: Topology

    def orders(self) -> list[OrderCreated]:
        return [e for e in self.events if isinstance(e, OrderCreated)]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shop(
    request: pytest.FixtureRequest, kafka: KafkaCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """One shop's log, projected once per store kind, shared by this module's read tests."""
    if request.param == "sqlite":
        store_url = f"sqlite:///{tmp_path_factory.mktemp('view') / 'view.db'}"
    else:
        store_url = create_database(request.getfixturevalue("postgres_url"), unique("view_"))
    with scratch_topology(
        Topology.load(REPO / "topics.yaml"), kafka.bootstrap, unique("q")
    ) as topology:
        events = shop_log(120)
        kafka.seed(topology, events)
        for projection in PROJECTIONS.values():
            run_until_caught_up(projection, store_url, topology, kafka.bootstrap)
        keys, auth = keyed("queries")
        with (
            open_store(store_url) as view,
            TestClient(create_app(view, keys), headers=auth) as client,
        ):
            yield Shop(events, store_url, client, topology)


def test_an_order_with_its_freshness(shop: Shop) -> None:
    order = shop.orders()[7]
    body = shop.client.get(f"/orders/{order.order_id}").json()
    data = body["data"]
    assert (data["order_id"], data["user_id"], data["status"]) == (
        order.order_id,
        order.user_id,
        "created",
    )
    assert data["lines"] == [line.model_dump() for line in order.lines]
    assert data["timeline"][0]["step"] == "created"
    freshness = body["freshness"]["orders"]
    assert freshness["lag"] == 0
    assert freshness["generation"] == 1
    assert sum(freshness["offsets"].values()) >= len(shop.orders())
    assert freshness["event_time"] is not None


def test_unknown_things_are_404_with_freshness(shop: Shop) -> None:
    for path in ("/orders/nope", "/products/nope", "/inventory/nope"):
        response = shop.client.get(path)
        assert response.status_code == 404
        assert "is not in the view (yet)" in response.json()["detail"]
        assert response.json()["freshness"]


def test_point_reads_answer_byte_for_byte_as_the_routes_they_shadow(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = shop.orders()[3].order_id
    product = next(e for e in shop.events if isinstance(e, ProductCreated)).product_id
    paths = [f"/orders/{order}", f"/products/{product}", f"/inventory/{product}"]
    paths += ["/orders/nope", "/products/nope", "/inventory/nope", f"/orders/{order}?x=1"]
    paths += ["/orders/", f"/orders/{order}/", f"/orders/{order}/x", "//orders/x", "/Orders/x"]
    paths += ["/orders/o%20x", "/orders/%C3%A9", "/orders/a%2Fb", f"/users/{order}/orders"]
    answered: list[str] = []
    match = PointReads._match

    def counted(self: PointReads, scope: Any) -> Any:
        found = match(self, scope)
        if found is not None:
            answered.append(scope["path"])
        return found

    monkeypatch.setattr(PointReads, "_match", counted)
    keys, auth = keyed("queries")
    with (
        open_store(shop.store_url) as view,
        TestClient(create_app(view, keys), headers=auth) as fast,
        TestClient(create_app(view, keys, point_reads=False), headers=auth) as routed,
    ):
        for method in ("GET", "HEAD"):
            for path in paths:
                ours = fast.request(method, path, follow_redirects=False)
                theirs = routed.request(method, path, follow_redirects=False)
                assert (ours.status_code, ours.headers, ours.content) == (
                    theirs.status_code,
                    theirs.headers,
                    theirs.content,
                ), f"{method} {path}"
        assert fast.get(paths[0], headers={"Authorization": "Bearer nope"}).status_code == 401
    # Every GET of one id (a query string too, %2F not: that makes two segments).
    assert len(answered) == 9, answered
    assert len(set(answered)) == 8


def test_order_lists_are_paged_and_filtered(shop: Shop) -> None:
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"status": "created", "limit": 25}
        if after:
            params["after"] = after
        page = shop.client.get("/orders", params=params).json()["data"]
        assert len(page["items"]) <= 25
        seen += [o["order_id"] for o in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(o.order_id for o in shop.orders())
    assert shop.client.get("/orders", params={"status": "confirmed"}).json()["data"]["items"] == []


def test_a_users_orders(shop: Shop) -> None:
    user = Counter(o.user_id for o in shop.orders()).most_common(1)[0][0]
    body = shop.client.get(f"/users/{user}/orders", params={"limit": 500}).json()
    assert body["data"]["user"]["user_id"] == user
    expected = sorted(o.order_id for o in shop.orders() if o.user_id == user)
    assert [o["order_id"] for o in body["data"]["items"]] == expected
    assert set(body["freshness"]) == {"catalogue", "orders"}


def test_products_with_price_tax_and_stock(shop: Shop) -> None:
    product = next(e for e in shop.events if isinstance(e, ProductCreated))
    data = shop.client.get(f"/products/{product.product_id}").json()["data"]
    assert (data["name"], data["category"]) == (product.name, product.category)
    assert data["price"]["currency"] == "EUR"
    assert data["price"]["history"][0]["amount_minor"] == data["price"]["price_minor"]
    assert set(data["tax_rates_bp"]) == {"DE", "FR", "NL", "AT", "ES", "IT"}
    stock = data["stock"]
    assert stock["available"] == stock["on_hand"] - stock["reserved"] >= 0
    listed = shop.client.get("/products", params={"limit": 500}).json()["data"]["items"]
    assert len(listed) == 40
    assert shop.client.get(f"/inventory/{product.product_id}").json()["data"] == stock


def test_health_reports_every_projection(shop: Shop) -> None:
    health = shop.client.get("/health").json()
    assert health["status"] == "ok"
    assert set(health["projections"]) == set(PROJECTIONS)
    assert all(p["lag"] == 0 for p in health["projections"].values())


def test_cli_gives_the_same_answers(shop: Shop) -> None:
    env = {"ECOM_STORE": shop.store_url}
    order = shop.orders()[3]
    result = run_cli("query", "order", order.order_id, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert (
        json.loads(result.stdout)["data"]
        == shop.client.get(f"/orders/{order.order_id}").json()["data"]
    )
    everything = json.loads(run_cli("query", "orders", "--json", env=env).stdout)
    assert len(everything["data"]["items"]) == len(shop.orders())
    human = run_cli("query", "inventory", order.lines[0].product_id, env=env)
    assert "available:" in human.stdout
    assert "[inventory: lag 0" in human.stdout
    user = run_cli("query", "user", order.user_id, env=env)
    assert order.order_id in user.stdout
    assert user.stdout.startswith(f"user {order.user_id}: "), "the user, then the orders"
    missing = run_cli("query", "order", "nope", env=env)
    assert missing.returncode == 2
    assert missing.stderr == "error: order nope is not in the view (yet)\n"
    nobody = run_cli("query", "user", "u-nope", env=env)
    assert nobody.returncode == 2
    assert nobody.stderr == "error: user u-nope is not in the view (yet)\n"
    bogus = run_cli("query", "orders", "--status", "bogus", env=env)
    assert bogus.returncode == 2
    assert "'bogus' is not one of" in bogus.stderr


def test_the_live_page_and_its_numbers(shop: Shop, kafka: KafkaCluster) -> None:
    keys, auth = keyed("queries")
    watch = order_watch(shop.topology, kafka.bootstrap)
    with open_store(shop.store_url) as store:
        live = Live(QueryView(store), watch).start()
        try:
            with TestClient(create_app(store, keys, live=live)) as client:
                page = client.get("/")
                assert page.status_code == 200, "the page itself is open"
                assert "the shop, live" in page.text
                assert "http" not in page.text.split("<body")[1]
                assert client.get("/live").status_code == 401, "its numbers want a key"
                orders_topic = shop.topology.topic("orders").name
                numbers = wait_for(
                    lambda: _watched(client.get("/live", headers=auth).json(), orders_topic),
                    30,
                    "the watch to measure the groups and read the newest orders",
                )
                scraped = client.get("/metrics").text
        finally:
            live.stop()
    assert numbers["orders"] == {"created": len(shop.orders())}
    assert numbers["history"][0][1] == len(shop.orders()), "[time, total, confirmed, ...]"
    products = {e.product_id for e in shop.events if isinstance(e, ProductCreated)}
    assert [s["product_id"] for s in numbers["stock"]] == sorted(products)[:PRODUCTS_SHOWN]
    assert numbers["products"] == len(products), "the page says how many it leaves out"
    kafka_side = numbers["kafka"]
    assert kafka_side["error"] is None
    latest = kafka_side["latest"][orders_topic]
    assert {r["type"] for r in latest} <= set(shop.topology.topic("orders").spec.events)
    assert set(kafka_side["dead_letters"].values()) == {0}
    assert kafka_side["latency_ms"]["orders"] == 0, "no order reached a final state"
    group = shop.topology.projection_group("orders")
    labels = f'consumergroup="{group}",partition="0",topic="{orders_topic}"'
    lag = f"kafka_consumergroup_lag{{{labels}}} 0.0"
    assert lag in scraped, "every group's lag, in the query API's metrics"


def _watched(numbers: dict[str, Any], topic: str) -> dict[str, Any] | None:
    watched = numbers["kafka"]
    return numbers if watched.get("updated") and len(watched["latest"][topic]) == KEEP else None
