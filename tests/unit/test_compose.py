"""docker-compose.yml runs the same secure cluster as `ecom cluster up`.

No Docker engine runs here, so the file is validated by `docker-compose config` (the
Compose implementation from Debian's docker-compose package), and the node settings its
`secrets` service writes are compared with the local cluster's.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecom.cluster import cluster_settings, kafka_version
from ecom.cluster.compose import write_compose_secrets
from ecom.cluster.config import secure_settings, super_users
from ecom.kafka.security import SERVICES, read_properties
from tests.support import REPO

BROKERS = ("kafka-1", "kafka-2", "kafka-3")


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


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("secrets")
    write_compose_secrets(out, out.parent / f"{out.name}-ca")
    return out


def test_brokers_use_the_pinned_kafka_version(compose: dict[str, Any]) -> None:
    for name in BROKERS:
        assert compose["services"][name]["image"] == f"apache/kafka:{kafka_version()}"


def test_nodes_start_from_the_secrets_the_one_shot_service_made(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["secrets"]["command"] == ["cluster", "compose-secrets", "/secrets", "/ca"]
    for number, name in enumerate(BROKERS, start=1):
        node = services[name]
        assert node["command"] == ["/secrets/start.sh", str(number)]
        assert node["depends_on"]["secrets"]["condition"] == "service_completed_successfully"
        assert ("secrets", "/secrets", True) in {_mount(v) for v in node["volumes"]}
        assert "ca" not in {_mount(v)[0] for v in node["volumes"]}, "the CA key stays apart"


def test_node_settings_match_the_local_cluster(secrets: Path) -> None:
    expected = cluster_settings(3)
    secure = secure_settings("-", "-", "-", super_users(3), ("SASL_SSL", "HOST"))
    same = ("sasl.enabled.mechanisms", "authorizer.class.name", "allow.everyone.if.no.acl.found",
            "super.users", "listener.name.controller.ssl.client.auth",
            "listener.security.protocol.map", "inter.broker.listener.name")  # fmt: skip
    for number in (1, 2, 3):
        path = secrets / f"node-{number}" / "server.properties"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        settings = read_properties(path)
        mismatched = {k: (settings.get(k), v) for k, v in expected.items() if settings[k] != v}
        assert not mismatched, f"node {number} differs from the local cluster: {mismatched}"
        assert {k: settings[k] for k in same} == {k: secure[k] for k in same}
        assert settings["node.id"] == str(number)
        assert settings["process.roles"] == "broker,controller"
        assert (
            settings["controller.quorum.voters"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        )
        assert settings["ssl.keystore.location"] == f"/secrets/tls/node-{number}.pem"
        assert (secrets / "tls" / f"node-{number}.pem").is_file()


def test_every_service_has_credentials_and_passwords_stay_off_command_lines(
    secrets: Path,
) -> None:
    for service in SERVICES:
        settings = read_properties(secrets / "credentials" / f"{service}.properties")
        assert settings["sasl.username"] == service
        assert settings["ssl.ca.location"] == "/secrets/tls/ca.pem"
    start = (secrets / "start.sh").read_text()
    assert '"@$dir/format.args"' in start
    arguments = (secrets / "node-1" / "format.args").read_text()
    assert arguments.count("--add-scram") == len(SERVICES) + 1
    again = (secrets / "credentials" / "admin.properties").read_text()
    write_compose_secrets(secrets, secrets.parent / f"{secrets.name}-ca")
    assert (secrets / "credentials" / "admin.properties").read_text() == again, "kept"


def test_host_ports_are_loopback_and_advertised(compose: dict[str, Any], secrets: Path) -> None:
    published = []
    for number, name in enumerate(BROKERS, start=1):
        (port,) = compose["services"][name]["ports"]
        host_ip, port_number = _published(port)
        assert host_ip == "127.0.0.1", "brokers are published on loopback only"
        advertised = read_properties(secrets / f"node-{number}" / "server.properties")[
            "advertised.listeners"
        ]
        assert f"HOST://localhost:{port_number}" in advertised
        published.append(port_number)
    assert published == [9092, 9093, 9094]


def test_topics_service_applies_topics_yaml_as_admin_after_the_brokers(
    compose: dict[str, Any],
) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == ["topics", "apply"]
    assert set(topics["depends_on"]) == set(BROKERS)
    assert "kafka-1:19092" in topics["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert (
        topics["environment"]["ECOM_KAFKA_CREDENTIALS"] == "/secrets/credentials/admin.properties"
    )


def _mount(volume: str | dict[str, Any]) -> tuple[str, str, bool]:
    """(source, target, read only) of a volume in short or long syntax."""
    if isinstance(volume, dict):
        return volume["source"], volume["target"], bool(volume.get("read_only"))
    source, target, *mode = volume.split(":")
    return source, target, mode == ["ro"]


def _published(port: str | dict[str, Any]) -> tuple[str, int]:
    """(host address, host port) of a port in short or long syntax."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "0.0.0.0")), int(port["published"])
    parts = port.split("/")[0].split(":")
    return (parts[0], int(parts[1])) if len(parts) == 3 else ("0.0.0.0", int(parts[0]))


def test_the_image_holds_every_package_the_project_installs() -> None:
    """`pip install .` in the image installs what it copied: a package left out (bench,
    chain) makes `ecom bench` and `ecom compare` fail to import there."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(_copied_packages())
    assert packages <= copied, f"not copied: {sorted(packages - copied)}"


def test_the_image_installs_every_data_file_of_its_packages(tmp_path: Path) -> None:
    """`pip install .` copies only the files package-data names: without the .avsc files
    the image's `ecom produce` had no schema to encode with."""
    copied = _copied_packages()
    tracked = subprocess.run(["git", "ls-files", *copied], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    data = {path for path in tracked if not path.endswith(".py")}
    tree = tmp_path / "tree"
    for path in ["pyproject.toml", "README.md", *tracked]:
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, tree / path)
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "-d", str(tmp_path / "built")],
                   cwd=tree, capture_output=True, check=True)  # fmt: skip
    built = {str(p.relative_to(tmp_path / "built")) for p in (tmp_path / "built").rglob("*")
             if p.is_file() and p.suffix != ".py"}  # fmt: skip
    assert len(data) > 50
    assert data <= built, f"not installed: {sorted(data - built)[:5]}"


def _copied_packages() -> list[str]:
    return [line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines()
            if line.startswith("COPY ") and len(line.split()) == 3]  # fmt: skip
