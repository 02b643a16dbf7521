"""docker-compose.yml runs the same cluster as `ecom cluster up`.

No Docker engine runs here, so the file is validated by `docker-compose config` (the
Compose implementation from Debian's docker-compose package) and its broker settings
are compared with the local cluster's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from ecom.cluster import cluster_settings, kafka_version
from tests.support import REPO

BROKERS = ("kafka-1", "kafka-2", "kafka-3")


def _env_to_property(name: str) -> str:
    """Map an apache/kafka image variable to its property (KAFKA_A_B -> a.b)."""
    body = name.removeprefix("KAFKA_").lower()
    return body.replace("___", "\0").replace("__", "\1").replace("_", ".").replace(
        "\0", "-").replace("\1", "_")  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (make system-deps installs it)")
        pytest.skip("docker-compose is not installed")
    result = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def _properties(service: dict[str, Any]) -> dict[str, str]:
    env = service["environment"]
    return {_env_to_property(k): str(v) for k, v in env.items() if k.startswith("KAFKA_")}


def test_env_names_map_like_the_image_does() -> None:
    assert _env_to_property("KAFKA_MIN_INSYNC_REPLICAS") == "min.insync.replicas"
    assert _env_to_property("KAFKA_A__B___C") == "a_b-c"


def test_brokers_use_the_pinned_kafka_version(compose: dict[str, Any]) -> None:
    for name in BROKERS:
        assert compose["services"][name]["image"] == f"apache/kafka:{kafka_version()}"


def test_brokers_match_the_local_cluster_settings(compose: dict[str, Any]) -> None:
    expected = cluster_settings(3)
    for name in BROKERS:
        properties = _properties(compose["services"][name])
        mismatched = {
            k: (properties.get(k), v) for k, v in expected.items() if properties.get(k) != v
        }
        assert not mismatched, f"{name} differs from the local cluster: {mismatched}"


def test_three_combined_nodes_form_one_quorum(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ids = {_properties(services[name])["node.id"] for name in BROKERS}
    assert ids == {"1", "2", "3"}
    voters = {_properties(services[name])["controller.quorum.voters"] for name in BROKERS}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert all(_properties(services[n])["process.roles"] == "broker,controller" for n in BROKERS)
    assert len({services[n]["environment"]["CLUSTER_ID"] for n in BROKERS}) == 1


def test_host_ports_equal_the_local_cluster_bootstrap(compose: dict[str, Any]) -> None:
    published = []
    for name in BROKERS:
        (port,) = compose["services"][name]["ports"]
        advertised = _properties(compose["services"][name])["advertised.listeners"]
        assert f"localhost:{port['published']}" in advertised
        published.append(int(port["published"]))
    assert published == [9092, 9093, 9094]


def test_topics_service_applies_topics_yaml_after_the_brokers(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == ["topics", "apply"]
    assert set(topics["depends_on"]) == set(BROKERS)
    assert "kafka-1:19092" in topics["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
