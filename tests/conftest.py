"""Fixtures: one Kafka cluster object for the session, unique topics and groups per test.

Where the cluster comes from, first match wins:
  1. KAFKA_BOOTSTRAP_SERVERS: a cluster you run yourself;
  2. a Docker engine that answers: docker-compose.yml's 3-node cluster via testcontainers;
  3. the local cluster (`ecom cluster up`), started for the session if it is not running.

`kafka` is the cluster object every test talks through: `kafka.topology()` (topics.yaml
under a prefix of the test's own), `kafka.producer()`, `kafka.consumer(group)`,
`kafka.seed(topology, events)`, `kafka.read(topics, n)`, `kafka.ends(topics)`,
`kafka.admin()`. Every client it makes has the project's client settings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consumers.store import Store, open_store
from ecom.cluster import LocalCluster
from ecom.kafka import (
    BytesProducer,
    Consumer,
    Message,
    Partition,
    TopicAdmin,
    TopicReader,
    consumer_config,
    log_ends,
)
from ecom.kafka.security import write_private
from ecom.settings import Settings
from ecom.topics_plan import wanted_acls
from ecom.topology import Topology
from producers.producer import EventProducer
from schemas import Event
from tests.postgres import create_database, postgres_server
from tests.support import REPO, run_cli, unique, wait_for

# Processes the tests start serve no metrics unless a test gives them a port: two
# runners or workers at once would want the same default one.
os.environ.setdefault("ECOM_METRICS_PORT", "0")


@dataclass
class KafkaCluster:
    """The cluster the tests talk to, and the clients they talk through."""

    bootstrap: str
    origin: str
    local: LocalCluster | None = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def admin(self) -> TopicAdmin:
        return TopicAdmin(self.bootstrap)

    def topology(self, prefix: str | None = None) -> Topology:
        """Create every topic of topics.yaml under a prefix (a fresh one by default)."""
        topology = Topology.load(REPO / "topics.yaml", prefix=prefix or unique() + "-")
        admin = self.admin()
        admin.execute(admin.plan(topology, dev=admin.broker_count() < 3))
        return topology

    def delete(self, topology: Topology) -> None:
        """Delete a topology's topics (set ECOM_TEST_KEEP_TOPICS to keep them)."""
        if not os.environ.get("ECOM_TEST_KEEP_TOPICS"):
            admin = self.admin()
            admin.delete([t.name for t in topology.topics()])
            if admin.has_authorizer():
                admin.revoke(wanted_acls(topology))

    def producer(self, **overrides: Any) -> BytesProducer:
        """A delivery-tracked producer of bytes (idempotent, acks=all)."""
        return BytesProducer(self.bootstrap, **overrides)

    def consumer(self, group: str | None = None, **overrides: Any) -> Consumer:
        """A consumer in a group (a fresh one by default), reading from the start."""
        return Consumer(consumer_config(self.bootstrap, group or unique("g"), **overrides))

    def seed(self, topology: Topology, events: Sequence[Event]) -> None:
        """Publish events and wait until Kafka has acknowledged every one."""
        with EventProducer(topology, self.bootstrap, "/ecomstream/test") as producer:
            for event in events:
                producer.publish(event)

    def read(self, topics: list[str], expected: int, timeout: float = 60) -> list[Any]:
        """Read `expected` records (confluent-kafka messages) from the start of topics
        (every partition, no group)."""
        records: list[Message] = []
        with TopicReader(self.bootstrap, topics, records.append, name="test-read"):
            wait_for(lambda: len(records) >= expected, timeout, f"{expected} records on {topics}")
        return records

    def ends(self, topics: list[str]) -> dict[Partition, int]:
        """The log end offset of every partition of the topics."""
        return log_ends(self.bootstrap, topics)


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


def _local_cluster(request: pytest.FixtureRequest) -> KafkaCluster:
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
    # Children find the cluster (and its credentials) whatever ECOM_HOME a test gives them.
    os.environ.setdefault("ECOM_CLUSTER_DIR", str(local.root.resolve()))
    return KafkaCluster(local.bootstrap_servers(), "local", local)


def _compose_cluster(request: pytest.FixtureRequest) -> KafkaCluster:
    from testcontainers.compose import DockerCompose

    compose = DockerCompose(str(REPO), services=["kafka-1", "kafka-2", "kafka-3"], wait=True)
    compose.start()
    request.addfinalizer(compose.stop)
    # The cluster is secure: the session runs as its admin, with the CA copied out.
    folder = Path(tempfile.mkdtemp(prefix="ecom-compose-"))
    ca, _, _ = compose.exec_in_container(["cat", "/secrets/tls/ca.pem"], "kafka-1")
    admin, _, _ = compose.exec_in_container(
        ["cat", "/secrets/credentials/admin.properties"], "kafka-1"
    )
    (folder / "ca.pem").write_text(ca)
    credentials = folder / "admin.properties"
    write_private(credentials, admin.replace("/secrets/tls/ca.pem", str(folder / "ca.pem")))
    os.environ["ECOM_KAFKA_CREDENTIALS"] = str(credentials)
    return KafkaCluster("localhost:9092,localhost:9093,localhost:9094", "docker-compose")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that asks for the local cluster, so `-m` can select it."""
    for item in items:
        if "local_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.local_cluster)


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> KafkaCluster:
    """A running Kafka cluster for the whole test session."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return KafkaCluster(bootstrap, "env")
    if _docker_answers():
        return _compose_cluster(request)
    return _local_cluster(request)


@pytest.fixture
def local_cluster(kafka: KafkaCluster) -> LocalCluster:
    """The local cluster, for tests that kill and restart brokers. Without one the test
    fails, never skips: deselect such tests with `-m "not local_cluster"` instead."""
    if kafka.local is None:
        pytest.fail(
            f"needs the local cluster (it kills and restarts brokers), but this session uses "
            f"{kafka.origin}; run without KAFKA_BOOTSTRAP_SERVERS or deselect with "
            "-m 'not local_cluster'"
        )
    return kafka.local


@pytest.fixture
def cli_env(kafka: KafkaCluster) -> dict[str, str]:
    """Environment for `ecom` subprocesses: this session's cluster."""
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}


@pytest.fixture
def home_env(kafka: KafkaCluster, tmp_path: Path) -> dict[str, str]:
    """Environment for `ecom` subprocesses with a home of their own (tmp_path): this
    session's cluster and the repository's topics.yaml."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "ECOM_HOME": str(tmp_path),
        "ECOM_TOPICS_FILE": str(REPO / "topics.yaml"),
    }


@pytest.fixture
def topology(kafka: KafkaCluster) -> Iterator[Topology]:
    """topics.yaml under a prefix of this test's own, applied to the cluster, then deleted."""
    topology = kafka.topology()
    yield topology
    kafka.delete(topology)


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
