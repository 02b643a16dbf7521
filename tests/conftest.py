"""Fixtures: a real Kafka cluster for the session, unique topics and groups per test.

Where the cluster comes from, first match wins:
  1. KAFKA_BOOTSTRAP_SERVERS: a cluster you run yourself;
  2. a Docker engine that answers: docker-compose.yml's 3-node cluster via testcontainers;
  3. the local cluster (`ecom cluster up`), started for the session if it is not running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consumers.store import Store, open_store
from ecom.cluster import LocalCluster
from ecom.settings import Settings
from ecom.topics_admin import TopicAdmin
from ecom.topics_plan import make_plan
from ecom.topology import Topology
from tests.postgres import create_database, postgres_server
from tests.support import REPO, run_cli, unique


@dataclass
class KafkaTarget:
    """The cluster the tests talk to."""

    bootstrap: str
    origin: str
    local: LocalCluster | None = None


def _docker_answers() -> bool:
    """Tell whether a Docker engine answers (the client alone is not enough)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "info"], capture_output=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _local_cluster(request: pytest.FixtureRequest) -> KafkaTarget:
    local = LocalCluster.from_settings(Settings())
    created = local.broker_count() is None
    started = not local.is_running()
    if started:
        result = run_cli("cluster", "up", "--brokers", "3", timeout=300)
        assert result.returncode == 0, f"ecom cluster up failed:\n{result.stderr}"

    def stop() -> None:
        if started:
            run_cli("cluster", "down", *(["--wipe"] if created else []), timeout=120)

    request.addfinalizer(stop)
    return KafkaTarget(local.bootstrap_servers(), "local", local)


def _compose_cluster(request: pytest.FixtureRequest) -> KafkaTarget:
    from testcontainers.compose import DockerCompose

    compose = DockerCompose(str(REPO), services=["kafka-1", "kafka-2", "kafka-3"], wait=True)
    compose.start()
    request.addfinalizer(compose.stop)
    return KafkaTarget("localhost:9092,localhost:9093,localhost:9094", "docker-compose")


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> KafkaTarget:
    """A running Kafka cluster for the whole test session."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return KafkaTarget(bootstrap, "env")
    if _docker_answers():
        return _compose_cluster(request)
    return _local_cluster(request)


@pytest.fixture
def local_cluster(kafka: KafkaTarget) -> LocalCluster:
    """The local cluster, for tests that kill and restart brokers."""
    if kafka.local is None:
        pytest.skip(f"needs the local cluster; this session uses {kafka.origin}")
    return kafka.local


@pytest.fixture
def cli_env(kafka: KafkaTarget) -> dict[str, str]:
    """Environment for `ecom` subprocesses: this session's cluster."""
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}


@pytest.fixture
def topology(kafka: KafkaTarget) -> Iterator[Topology]:
    """topics.yaml under a prefix of this test's own, applied to the cluster, then deleted."""
    topology = Topology.load(REPO / "topics.yaml", prefix=unique() + "-")
    admin = TopicAdmin(kafka.bootstrap)
    brokers = admin.broker_count()
    plan = make_plan(topology, {}, brokers, dev=brokers < 3)
    admin.execute(plan)
    yield topology
    if not os.environ.get("ECOM_TEST_KEEP_TOPICS"):  # set it to debug a failed test
        admin.delete([t.name for t in topology.topics()])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the session (see tests/postgres.py)."""
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty view database: SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'view.db'}"
    server: str = request.getfixturevalue("postgres_url")
    return create_database(server, unique("view_"))


@pytest.fixture
def view(store_url: str) -> Iterator[Store]:
    """The test's view database, opened (and closed afterwards)."""
    with open_store(store_url) as store:
        yield store


@pytest.fixture
def group_id() -> str:
    """A consumer group name of this test's own."""
    return unique("g")
