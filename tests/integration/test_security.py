"""The secure local cluster: TLS, SCRAM users per service, ACLs from topics.yaml."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from ecom.cluster import LocalCluster
from ecom.kafka import client_config, log_ends, security_for
from ecom.kafka.security import SERVICES, credentials_file, read_properties
from ecom.topology import Topology
from tests.conftest import KafkaCluster
from tests.support import run_cli, unique, wait_for

pytestmark = pytest.mark.local_cluster
USER = '{"user_id": "u-sec", "email": "a@b.de", "name": "A", "country": "DE"}'


@pytest.fixture
def secure(local_cluster: LocalCluster) -> LocalCluster:
    assert local_cluster.is_secure(), "the tests run on the secure cluster (ecom cluster up)"
    return local_cluster


def _as(secure: LocalCluster, service: str, topology: Topology) -> dict[str, str]:
    """The environment of a CLI run as `service`, whatever the command would pick."""
    return {
        "ECOM_KAFKA_CREDENTIALS": str(credentials_file(secure.root, service)),
        "ECOM_TOPIC_PREFIX": topology.prefix,
    }


def test_plaintext_and_a_wrong_password_are_refused(secure: LocalCluster) -> None:
    bootstrap = secure.bootstrap_servers()
    plaintext = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    with pytest.raises(KafkaException):
        plaintext.list_topics(timeout=5)
    wrong = {
        "ECOM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ECOM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "ECOM_KAFKA_SASL_USERNAME": "admin",
        "ECOM_KAFKA_SASL_PASSWORD": "not-the-password",
        "ECOM_KAFKA_SSL_CA_LOCATION": str(secure.tls_dir / "ca.pem"),
    }
    refused = run_cli("topics", "describe", env=wrong)
    assert refused.returncode == 3
    assert "refused this client" in refused.stderr
    assert "invalid credentials" in refused.stderr
    assert "not-the-password" not in refused.stderr


def test_a_service_cannot_write_a_topic_it_does_not_own(
    secure: LocalCluster, kafka: KafkaCluster, topology: Topology
) -> None:
    users = topology.topic("users").name
    env = _as(secure, "projections", topology)
    refused = run_cli("produce", "UserCreated", "--data", USER, env=env)
    assert refused.returncode == 3
    assert refused.stderr.count("\n") == 1
    assert "Topic authorization failed" in refused.stderr
    assert sum(log_ends(kafka.bootstrap, [users]).values()) == 0
    allowed = run_cli(
        "produce", "UserCreated", "--data", USER, env=_as(secure, "producer", topology)
    )
    assert allowed.returncode == 0, allowed.stderr
    assert sum(log_ends(kafka.bootstrap, [users]).values()) == 1


def test_a_consumer_in_a_group_it_does_not_own_is_refused(
    secure: LocalCluster, topology: Topology
) -> None:
    bootstrap = secure.bootstrap_servers()
    projections = security_for(bootstrap, "projections").librdkafka()
    foreign = topology.flow_app("payment")  # the payment worker's group
    consumer = Consumer(client_config(bootstrap, **projections, **{"group.id": foreign}))
    consumer.subscribe([topology.topic("orders").name])
    try:
        error = wait_for(lambda: _error_of(consumer), 60, "the group's refusal")
    finally:
        consumer.close()
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    own = topology.projection_group("orders") + unique("-")  # its prefix: ecom-projection-*
    settings = {**projections, "group.id": own}
    wait_for(lambda: _joins(bootstrap, settings, topology.topic("orders").name), 90,
             "partitions of its own group")  # fmt: skip


def _error_of(consumer: Consumer) -> KafkaError | None:
    message = consumer.poll(0.5)
    return message.error() if message is not None and message.error() else None


DENIED = (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED)


def _joins(bootstrap: str, settings: dict[str, str], topic: str) -> bool:
    """Tell whether a consumer with these settings gets partitions within 15 s. A broker
    may refuse for a moment after the ACLs were made (it applies them from the metadata
    log a little later than the controller): then a new consumer tries again."""
    consumer = Consumer(client_config(bootstrap, **settings))
    consumer.subscribe([topic])
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            error = message.error() if message is not None else None
            if error is not None and error.code() in DENIED:
                return False
            if consumer.assignment():
                return True
        return False
    finally:
        consumer.close()


def test_credentials_are_private_printed_per_service_and_never_on_a_command_line(
    secure: LocalCluster,
) -> None:
    for service in SERVICES:
        path = credentials_file(secure.root, service)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for node in secure.nodes():
        assert stat.S_IMODE(node.properties.stat().st_mode) == 0o600
        assert not (node.folder / "format.args").exists()
    printed = run_cli("cluster", "credentials", "inventory")
    assert printed.returncode == 0, printed.stderr
    settings = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    assert settings["sasl.username"] == "inventory"
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["bootstrap.servers"] == secure.bootstrap_servers()
    password = settings["sasl.password"]
    java = run_cli("cluster", "credentials", "inventory", "--java").stdout
    assert f'username="inventory" password="{password}";' in java
    assert "ssl.truststore.type=PEM" in java
    broker = read_properties(credentials_file(secure.root, "broker"))
    for pid in filter(None, (node.pid() for node in secure.nodes())):
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert password not in command_line
        assert broker["sasl.password"] not in command_line
    unknown = run_cli("cluster", "credentials", "root")
    assert unknown.returncode == 2
    assert "Traceback" not in unknown.stderr
