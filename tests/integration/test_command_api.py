"""The command API publishes validated events and answers 202, or a clear 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ecom.apikeys import ApiKeys
from ecom.kafka import log_ends
from ecom.topology import Topology
from producers.api import create_app
from schemas import Codec, OrderCancellationRequested, OrderCreated
from tests.conftest import KafkaCluster
from tests.support import keyed

pytestmark = pytest.mark.kafka
ORDER = {
    "user_id": "u-1",
    "lines": [{"product_id": "p-1", "quantity": 2}, {"product_id": "p-2", "quantity": 1}],
    "shipping_country": "FR",
    "currency": "EUR",
}


@pytest.fixture
def api_keys() -> tuple[ApiKeys, dict[str, str]]:
    return keyed("commands")


@pytest.fixture
def client(
    kafka: KafkaCluster, topology: Topology, api_keys: tuple[ApiKeys, dict[str, str]]
) -> Iterator[TestClient]:
    keys, auth = api_keys
    app = create_app(topology, kafka.bootstrap, keys, "http://query.test")
    with TestClient(app, headers=auth) as client:
        yield client


def test_post_orders_answers_202_with_the_order_id_and_where_to_read_it(
    client: TestClient, kafka: KafkaCluster, topology: Topology
) -> None:
    response = client.post("/orders", json=ORDER)
    assert response.status_code == 202
    body = response.json()
    order_id = body["entity_id"]
    assert body["read_at"] == f"http://query.test/orders/{order_id}"
    assert body["topic"] == topology.topic("orders").name
    (record,) = kafka.read([body["topic"]], 1)
    event = Codec().decode(record.value())
    assert isinstance(event, OrderCreated)
    assert (event.order_id, event.event_id) == (order_id, body["event_id"])
    assert (record.partition(), record.offset()) == (body["partition"], body["offset"])


def test_cancel_and_catalogue_commands_publish_their_events(
    client: TestClient, kafka: KafkaCluster, topology: Topology
) -> None:
    assert client.post("/orders/o-7/cancel", json={"reason": "too slow"}).status_code == 202
    assert client.post("/products", json={"name": "Mug", "category": "standard"}).status_code == 202
    assert (
        client.put(
            "/products/p-1/price", json={"price": {"amount_minor": 999, "currency": "EUR"}}
        ).status_code
        == 202
    )
    assert client.post("/products/p-1/stock", json={"quantity": 5}).status_code == 202
    assert client.put("/tax-rates/DE/food", json={"rate_bp": 700}).status_code == 202
    assert (
        client.post("/users", json={"email": "a@b.de", "name": "A", "country": "DE"}).status_code
        == 202
    )
    assert client.patch("/users/u-1", json={"name": "B"}).status_code == 202
    (record,) = kafka.read([topology.topic("orders").name], 1)
    cancel = Codec().decode(record.value())
    assert isinstance(cancel, OrderCancellationRequested)
    assert (cancel.order_id, cancel.reason) == ("o-7", "too slow")
    offsets = log_ends(kafka.bootstrap, [t.name for t in topology.topics()])
    assert sum(offsets.values()) == 7


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("post", "/orders", ORDER | {"lines": []}, 422, "lines"),
        ("post", "/orders", ORDER | {"currency": "EUX"}, 422, "ISO 4217"),
        ("post", "/orders", ORDER | {"coupon": "X"}, 422, "Extra inputs"),
        ("post", "/products/p-1/stock", {"quantity": 0}, 422, "must not be zero"),
        ("put", "/tax-rates/XX/food", {"rate_bp": 700}, 422, "ISO 3166"),
        ("post", "/orders/o-1/cancel", {"order_id": "o-2"}, 422, "Extra inputs"),
    ],
)
def test_invalid_requests_get_a_clear_4xx_and_publish_nothing(
    client: TestClient, kafka: KafkaCluster, topology: Topology,
    method: str, path: str, body: dict[str, object], status: int, detail: str,
) -> None:  # fmt: skip
    response = client.request(method, path, json=body)
    assert response.status_code == status
    assert detail in str(response.json()["detail"])
    offsets = log_ends(kafka.bootstrap, [t.name for t in topology.topics()])
    assert sum(offsets.values()) == 0


def test_openapi_documents_every_command(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/orders", "/orders/{order_id}/cancel", "/users", "/products",
            "/products/{product_id}/price", "/products/{product_id}/stock",
            "/tax-rates/{country}/{category}"} <= set(paths)  # fmt: skip
    assert client.get("/docs").status_code == 200


def test_a_retried_post_with_an_idempotency_key_gets_the_first_answer_and_publishes_once(
    client: TestClient, kafka: KafkaCluster, topology: Topology
) -> None:
    before = sum(log_ends(kafka.bootstrap, [topology.topic("orders").name]).values())
    headers = {"Idempotency-Key": "retry-me-1"}
    first = client.post("/orders", json=ORDER, headers=headers)
    again = client.post("/orders", json=ORDER, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json(), "the same order id, event id and offset"
    after = sum(log_ends(kafka.bootstrap, [topology.topic("orders").name]).values())
    assert after - before == 1
    other = client.post("/orders", json=ORDER | {"currency": "USD"}, headers=headers)
    assert other.status_code == 422
    assert "was used for another request" in other.json()["detail"]
    fresh = client.post("/orders", json=ORDER, headers={"Idempotency-Key": "another-key"})
    assert fresh.json()["entity_id"] != first.json()["entity_id"]


def test_idempotency_keys_are_each_clients_own(
    client: TestClient, api_keys: tuple[ApiKeys, dict[str, str]]
) -> None:
    other = {"Authorization": f"Bearer {api_keys[0].create('other-shop', 'commands')}"}
    key = {"Idempotency-Key": "race-1"}
    first = client.post("/orders", json=ORDER, headers=key)
    same = client.post("/orders", json=ORDER, headers=key | other)
    assert first.status_code == same.status_code == 202
    assert same.json()["event_id"] != first.json()["event_id"], "not the other client's answer"
    changed = client.post("/orders", json=ORDER | {"currency": "USD"}, headers=key | other)
    assert changed.status_code == 422, "the other client's own key, used for another request"
    elsewhere = client.post("/orders", json=ORDER | {"currency": "USD"},
                            headers={"Idempotency-Key": "race-2"} | other)  # fmt: skip
    assert elsewhere.status_code == 202
    assert client.post("/orders", json=ORDER, headers=key).json() == first.json()


def _chunks(size: int) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked), `size` bytes of JSON in all."""
    yield b'{"user_id": "'
    yield b"u" * (size - 15)
    yield b'"}'


@pytest.mark.parametrize(
    ("headers", "content", "status", "detail"),
    [
        ({"Authorization": ""}, None, 401, "an API key is required"),
        ({"Authorization": "Bearer ecom_not-a-key"}, None, 401, "unknown API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, None, 401, "an API key is required"),
        ("queries", None, 403, "this key's scope is queries; this API needs a commands key"),
        ({}, b"{" + b" " * 1_048_576 + b"}", 413, "request body over 1048576 bytes"),
        ({}, "chunked", 413, "request body over 1048576 bytes"),
    ],
)
def test_requests_without_the_right_key_or_too_big_are_refused_and_publish_nothing(
    client: TestClient, kafka: KafkaCluster, topology: Topology,
    api_keys: tuple[ApiKeys, dict[str, str]],
    headers: dict[str, str] | str, content: bytes | str | None, status: int, detail: str,
) -> None:  # fmt: skip
    if headers == "queries":
        headers = {"Authorization": f"Bearer {api_keys[0].create('reader', 'queries')}"}
    body = _chunks(1_048_577) if content == "chunked" else content
    assert isinstance(headers, dict)
    if body is None:
        response = client.post("/orders", json=ORDER, headers=headers)
    else:
        response = client.post("/orders", content=body, headers=headers)
    assert (response.status_code, response.json()["detail"][: len(detail)]) == (status, detail)
    offsets = log_ends(kafka.bootstrap, [t.name for t in topology.topics()])
    assert sum(offsets.values()) == 0


def test_health_is_open_and_names_no_cluster(kafka: KafkaCluster, topology: Topology) -> None:
    keys, _ = keyed("commands")
    with TestClient(create_app(topology, kafka.bootstrap, keys)) as anonymous:
        answer = anonymous.get("/health")
        assert answer.status_code == 200
        assert "127.0.0.1" not in answer.text
        assert "kafka" not in answer.text
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.post("/orders", json=ORDER).status_code == 401
