"""Liveness is not readiness: the APIs and the runners say when their answers are stale."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from consumers.api import create_app as query_app
from consumers.health import readiness
from consumers.store import Heartbeat, open_store
from ecom.cli.worker import kafka_answers
from ecom.cluster import LocalCluster
from ecom.kafka.security import credentials_file
from ecom.process import Spec, spawn, stop
from ecom.settings import Settings
from ecom.topology import Topology
from producers.api import create_app as command_app
from tests.conftest import KafkaCluster
from tests.integration.test_metrics import _free_port
from tests.postgres import create_database
from tests.runners import runner_process, shop_log
from tests.support import REPO, keyed, run_cli, scratch_cluster_env, unique, wait_for

FAST = Settings(ready_max_lag=10, ready_grace_s=5, runner_gone_s=3, heartbeat_s=0.5)


def _ready(url: str) -> tuple[int, dict[str, object]]:
    answer = httpx.get(url, timeout=5)
    return answer.status_code, json.loads(answer.content)


@pytest.mark.kafka
def test_the_query_api_is_ready_only_while_a_runner_keeps_the_view_fresh(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    kafka.seed(topology, [e for e in shop_log(60, seed=5) if e.domain == "inventory"])
    url = f"sqlite:///{tmp_path / 'view.db'}"
    port = _free_port()
    env = {"ECOM_METRICS_PORT": str(port), "ECOM_HEARTBEAT_S": "0.5", "ECOM_READY_MAX_LAG": "10"}
    keys, _ = keyed("queries")
    with open_store(url) as store, TestClient(query_app(store, keys, settings=FAST)) as client:
        assert client.get("/readyz").json()["reasons"] == ["no projection has built a view yet"]
        with runner_process(topology, kafka.bootstrap, url, "inventory", env=env) as runner:
            wait_for(lambda: client.get("/readyz").status_code == 200, 120, "a ready view")
            assert _ready(f"http://127.0.0.1:{port}/readyz") == (200, {"status": "ready"})
            assert _ready(f"http://127.0.0.1:{port}/livez")[0] == 200
            stop(runner)
        gone = wait_for(lambda: _not_ready(client), 60, "the runner to be missed")
        assert gone == ["inventory: no runner heard from in 3s"]
        assert client.get("/livez").status_code == 200, "alive all the same"
        with runner_process(topology, kafka.bootstrap, url, "inventory", env=env):
            wait_for(lambda: client.get("/readyz").status_code == 200, 120, "ready again")


def _not_ready(client: TestClient) -> list[str] | None:
    answer = client.get("/readyz")
    return answer.json()["reasons"] if answer.status_code == 503 else None


def test_readiness_names_a_lagging_view_a_silent_cluster_and_a_dead_store(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'view.db'}")
    store.fetch("SELECT 1")
    with store.transaction() as connection:
        connection.execute(
            "INSERT INTO ecom_views (projection, generation, switched_at) VALUES (?, ?, ?)",
            ("orders", 1, "2026-01-01T00:00:00+00:00"),
        )
    now = 1_000_000.0
    store.beat(Heartbeat("orders", "a", now - 1, 0, now - 1, None))
    assert readiness(store, FAST, now=now) == []
    store.beat(Heartbeat("orders", "a", now - 1, 500, now - 9, None))
    assert readiness(store, FAST, now=now) == ["orders: 500 records behind, over 10 for 8s"]
    store.beat(Heartbeat("orders", "a", now - 2, 0, now - 3, None))
    assert readiness(store, FAST, now=now) == [], "caught up when it last spoke"
    store.beat(Heartbeat("orders", "a", now - 1, 0, now - 1, now - 7))
    assert readiness(store, FAST, now=now) == ["orders: Kafka has not answered its runner for 7s"]
    store.beat(Heartbeat("orders", "b", now - 1, 0, now - 1, None))
    assert readiness(store, FAST, now=now) == ["orders: Kafka has not answered its runner for 7s"]
    assert readiness(store, FAST, {"inventory"}, now=now) == ["no projection has built a view yet"]
    store.close()


def test_readiness_says_when_the_store_cannot_be_read(postgres_url: str) -> None:
    import psycopg

    name = unique("health_")
    store = open_store(create_database(postgres_url, name))
    assert readiness(store, FAST) == ["no projection has built a view yet"]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    (reason,) = readiness(store, FAST)
    assert reason.startswith("the view store cannot be read: ")


@pytest.mark.kafka
def test_the_command_api_is_not_ready_when_kafka_is_gone_or_its_producer_failed(
    kafka: KafkaCluster, topology: Topology
) -> None:
    keys, _ = keyed("commands")
    with TestClient(command_app(topology, kafka.bootstrap, keys)) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        producer = client.app.state.services["publisher"].producer.producer  # type: ignore[attr-defined]
        producer.fatal = "Broker: Producer fenced (made up by the test)"
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["reasons"] == [f"the producer hit a fatal error: {producer.fatal}"]
        producer.fatal = None  # or closing the app would raise it
    closed = _free_port()  # nothing listens there
    with TestClient(command_app(topology, f"127.0.0.1:{closed}", keys)) as client:
        answer = client.get("/readyz")
        assert (answer.status_code, answer.json()["reasons"]) == (503, ["Kafka does not answer"])
        assert client.get("/livez").status_code == 200


@pytest.mark.kafka
def test_a_command_api_whose_principal_may_not_write_answers_503_and_goes_on(
    kafka: KafkaCluster, topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its delivery reports' thread died on the producer's fatal error. Kafka refuses the
    monitor (it may not write) either its producer id, a fatal error, or the record's
    topic, whichever it answers first: both are 503s naming the refusal, and the API goes
    on. (Readiness on a fatal error: the test above and test_publisher.)"""
    needs = "needs the secure local cluster's monitor credentials (ecom cluster up)"
    assert kafka.local is not None, needs
    assert kafka.local.is_secure(), needs
    monitor = credentials_file(kafka.local.root, "monitor")
    monkeypatch.setenv("ECOM_KAFKA_CREDENTIALS", str(monitor))
    keys, auth = keyed("commands")
    user = {"email": "a@b.de", "name": "A", "country": "DE"}
    with TestClient(command_app(topology, kafka.bootstrap, keys), headers=auth) as client:
        publisher = client.app.state.services["publisher"]  # type: ignore[attr-defined]
        for _ in range(2):
            answer = client.post("/users", json=user)
            assert answer.status_code == 503
            assert "authorization failed" in answer.json()["detail"]
            assert publisher._thread.is_alive(), "the delivery reports' thread goes on"


@pytest.mark.local_cluster
def test_a_runner_is_not_ready_while_its_broker_is_gone_and_ready_again_after(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    env = scratch_cluster_env(tmp_path, local_cluster) | {"KAFKA_BOOTSTRAP_SERVERS": ""}
    up = run_cli("cluster", "up", "--brokers", "1", "--insecure", env=env, timeout=180)
    assert up.returncode == 0, up.stderr
    port = _free_port()
    runner_env = env | {
        "ECOM_METRICS_PORT": str(port), "ECOM_HEARTBEAT_S": "0.5", "ECOM_READY_GRACE_S": "2",
        "ECOM_RUNNER_GONE_S": "60", "ECOM_STORE": f"sqlite:///{tmp_path / 'view.db'}",
    }  # fmt: skip
    scratch = LocalCluster(Path(env["ECOM_CLUSTER_DIR"]), int(env["ECOM_CLUSTER_PORT_BASE"]))
    readyz = f"http://127.0.0.1:{port}/readyz"
    try:
        assert run_cli("topics", "apply", "--dev", env=env).returncode == 0
        assert run_cli("produce", "StockAdjusted", "--data", STOCK, env=env).returncode == 0
        args = ("projections", "run", "inventory")
        runner = spawn(Spec("projections", args, runner_env, cwd=REPO))
        try:
            wait_for(lambda: _status(readyz) == 200, 120, "a ready runner")
            scratch.kill(1)
            _, body = wait_for(lambda: _answer_if(readyz, 503), 120, "not ready")
            reasons = " ".join(body["reasons"])  # type: ignore[arg-type]
            assert "inventory: Kafka has not answered its runner" in reasons
            assert _status(f"http://127.0.0.1:{port}/livez") == 200, "alive all the same"
            scratch.start(1)
            wait_for(lambda: _status(readyz) == 200, 180, "ready again")
        finally:
            stop(runner)
    finally:
        run_cli("cluster", "down", "--wipe", env=env, timeout=120)


STOCK = '{"product_id": "p-1", "quantity": 5}'


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _answer_if(url: str, status: int) -> tuple[int, dict[str, object]] | None:
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return (answer.status_code, answer.json()) if answer.status_code == status else None


def test_a_workers_readiness_is_whether_kafka_answers(kafka: KafkaCluster) -> None:
    """A worker's /readyz said ready with every broker dead."""
    assert kafka_answers(kafka.bootstrap)() == []
    assert kafka_answers("127.0.0.1:1")() == ["Kafka at 127.0.0.1:1 does not answer"]
