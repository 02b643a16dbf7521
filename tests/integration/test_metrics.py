"""Prometheus metrics: the APIs count requests by route, a projection runner counts what
it consumed (equal to the log it read) and reports its lag, the order-flow workers count
what they sent (equal to what the log grew by)."""

from __future__ import annotations

import re
import socket
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumers.api import create_app
from consumers.store import open_store
from ecom.topology import FLOW_SERVICES, Topology
from producers.simulate import Shop, ShopPlan
from schemas import Event, OrderCreated
from tests.conftest import KafkaCluster
from tests.flow import Workers
from tests.runners import runner_process, shop_log
from tests.support import keyed, wait_for


def _value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition, 0 if it is not there."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.rsplit(" ", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_query_api_counts_requests_by_route_and_status(tmp_path: Path) -> None:
    keys, auth = keyed("queries")
    with (
        open_store(f"sqlite:///{tmp_path / 'view.db'}") as store,
        TestClient(create_app(store, keys), headers=auth) as client,
    ):
        route = {"service": "query-api", "route": "/orders/{order_id}", "method": "GET"}
        before = _value(
            client.get("/metrics").text, "ecom_http_requests_total", **route, status="404"
        )
        assert client.get("/orders/o-1").status_code == 404
        assert client.get("/orders/o-2").status_code == 404
        text = client.get("/metrics").text
    assert _value(text, "ecom_http_requests_total", **route, status="404") == before + 2
    assert _value(text, "ecom_http_request_duration_seconds_count", **route) >= 2
    assert "o-1" not in text, "no entity id is ever a label"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


@pytest.mark.kafka
def test_a_runner_counts_what_it_consumed_as_the_log_says(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    orders = [e for e in shop_log(200, seed=31) if e.domain in ("order", "payment")]
    kafka.seed(topology, orders)
    topic = topology.topic("orders").name
    published = sum(kafka.ends([topic]).values())
    assert published == len(orders)
    port = _free_port()
    group = topology.projection_group("orders")
    url = f"sqlite:///{tmp_path / 'view.db'}"
    env = {"ECOM_METRICS_PORT": str(port)}
    with runner_process(topology, kafka.bootstrap, url, "orders", env=env):

        def consumed() -> float:
            text = _scrape(port)
            return _value(text, "ecom_records_consumed_total", service=group, topic=topic)

        wait_for(lambda: consumed() >= published, 120, "the runner to count every record", 0.2)
        text = _scrape(port)
    assert consumed_of(text, group, topic) == published == len(orders)
    partitions = range(topology.topic("orders").spec.partitions)
    lags = [_value(text, "kafka_consumergroup_lag", consumergroup=group, topic=topic,
                   partition=str(p)) for p in partitions]  # fmt: skip
    assert lags == [0.0] * len(lags)
    assert _value(text, "ecom_batch_phase_seconds_count", service=group, phase="commit") >= 1
    assert sum(isinstance(e, OrderCreated) for e in orders) > 0


def consumed_of(text: str, group: str, topic: str) -> float:
    return _value(text, "ecom_records_consumed_total", service=group, topic=topic)


@pytest.mark.kafka
def test_the_order_flow_workers_count_what_they_send_as_the_log_says(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    plan = ShopPlan(users=20, products=5, orders=40, seed=7, min_stock=50, max_stock=50)
    events = list(Shop(plan).events())
    seeded = Counter(topology.for_event(e.event_type).name for e in events)
    ports = {service: _free_port() for service in FLOW_SERVICES}
    env = {"ECOM_GATEWAY_LEDGER": str(tmp_path / "ledger.db")}
    with Workers(topology, kafka.bootstrap, env) as workers:
        workers.metrics_ports = ports
        for service in FLOW_SERVICES:
            workers.start_worker(service)
        kafka.seed(topology, events)
        names = [t.name for t in topology.topics()]

        def sent_equals_log() -> dict[str, float] | None:
            texts = {service: _scrape(port) for service, port in ports.items()}
            ends = Counter[str]()
            for (topic, _), end in kafka.ends(names).items():
                ends[topic] += end
            sent = {
                topic: sum(_value(t, "ecom_records_produced_total", service=s, topic=topic)
                           for s, t in texts.items())
                for topic in names
            }  # fmt: skip
            grew = {topic: ends[topic] - seeded[topic] for topic in names}
            # Equal at some instant is not enough: the first flow events can match too.
            flowed = grew[topology.topic("orders").name] > len(_orders_of(events))
            return sent if sent == grew and flowed else None

        sent = wait_for(sent_equals_log, 180, "the workers' counts to equal the log's growth", 1)
        texts = {service: _scrape(port) for service, port in ports.items()}
    orders = topology.topic("orders").name
    assert sent[orders] > len(_orders_of(events)), "every order got at least one flow event"
    for service, text in texts.items():
        consumed = sum(_value(text, "ecom_records_consumed_total", service=service, topic=t)
                       for t in names)  # fmt: skip
        assert consumed > 0, f"{service} counted nothing it read"
        assert _value(text, "ecom_checkpoint_commit_seconds_count", service=service) >= 1
        assert _value(text, "ecom_batch_phase_seconds_count", service=service, phase="handle") >= 1
    scraped = "".join(texts.values())
    assert not [o.order_id for o in _orders_of(events) if o.order_id in scraped], "no id labels"


def _orders_of(events: list[Event]) -> list[OrderCreated]:
    return [e for e in events if isinstance(e, OrderCreated)]
