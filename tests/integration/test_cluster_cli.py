"""`ecom cluster`: the local KRaft cluster, its failure messages and --dev topics."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecom.cluster import LocalCluster
from ecom.kafka import registered_brokers
from tests.support import TOPIC_COUNT, run_cli, scratch_cluster_env

pytestmark = pytest.mark.local_cluster


def _bin_with(tmp_path: Path, *tools: str) -> str:
    """Return a PATH holding only the named tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} is needed for this test"
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def _one_line_error(stderr: str) -> str:
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith("error: ")
    return stderr


def test_status_shows_every_node_alive_and_registered(local_cluster: LocalCluster) -> None:
    result = run_cli("cluster", "status")
    assert result.returncode == 0
    rows = [line.split() for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert [(r[0], r[4], r[5]) for r in rows] == [(str(i), "alive", "yes") for i in (1, 2, 3)]
    assert local_cluster.bootstrap_servers() in result.stdout


def test_start_returns_once_the_restarted_node_itself_answers(
    local_cluster: LocalCluster,
) -> None:
    """The cluster's broker list still names a node killed a moment ago (until its session
    times out): start waits for the node's own listener, which opens only once it is
    registered again."""
    node = local_cluster.node(3)
    assert run_cli("cluster", "kill", "3").returncode == 0
    result = run_cli("cluster", "start", "3", timeout=180)
    assert result.returncode == 0, result.stderr
    assert registered_brokers(f"127.0.0.1:{node.address.broker_port}") >= {3}, "it answers"


def test_up_on_a_running_cluster_only_reports_it(local_cluster: LocalCluster) -> None:
    pids = [node.pid() for node in local_cluster.nodes()]
    result = run_cli("cluster", "up")
    assert result.returncode == 0
    assert "already running" in result.stdout
    assert [node.pid() for node in local_cluster.nodes()] == pids


def test_up_without_java_says_so(tmp_path: Path) -> None:
    env = scratch_cluster_env(tmp_path) | {"PATH": _bin_with(tmp_path, "mvn"), "JAVA_HOME": ""}
    result = run_cli("cluster", "up", env=env)
    assert result.returncode == 4
    assert "no java was found" in _one_line_error(result.stderr)


def test_up_without_maven_when_jars_are_missing_says_so(tmp_path: Path) -> None:
    env = scratch_cluster_env(tmp_path) | {"PATH": _bin_with(tmp_path, "java")}
    env["JAVA_HOME"] = ""
    result = run_cli("cluster", "up", env=env)
    assert result.returncode == 4
    assert "Maven is needed" in _one_line_error(result.stderr)


def test_up_with_a_port_taken_names_the_port(tmp_path: Path) -> None:
    env = scratch_cluster_env(tmp_path)
    port = int(env["ECOM_CLUSTER_PORT_BASE"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_cli("cluster", "up", "--brokers", "1", env=env)
    assert result.returncode == 4
    assert f"port {port} (node 1's broker listener) is already in use" in _one_line_error(
        result.stderr
    )


def test_a_node_that_cannot_start_is_reported_with_its_log(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    env = scratch_cluster_env(tmp_path, local_cluster) | {"ECOM_KAFKA_HEAP": "-Xmx1m"}
    result = run_cli("cluster", "up", "--brokers", "1", env=env, timeout=120)
    assert result.returncode == 4
    assert result.stderr.startswith("error: node 1 exited during start-up")
    assert "heap" in result.stderr.lower()


@pytest.fixture
def one_broker(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A second, 1-node cluster on other ports, plaintext (--insecure); wiped afterwards."""
    env = scratch_cluster_env(tmp_path, local_cluster)
    result = run_cli("cluster", "up", "--brokers", "1", "--insecure", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "INSECURE: plaintext, no authentication, no ACLs" in result.stdout
    refused = run_cli("cluster", "up", env=env)
    assert refused.returncode == 2
    assert "is insecure; run `ecom cluster down --wipe`" in refused.stderr
    yield env
    run_cli("cluster", "down", "--wipe", env=env, timeout=120)


def test_one_broker_needs_dev_to_cap_replication(one_broker: dict[str, str]) -> None:
    env = one_broker | {"KAFKA_BOOTSTRAP_SERVERS": ""}
    refused = run_cli("topics", "apply", env=env)
    assert refused.returncode == 2
    assert "pass --dev" in _one_line_error(refused.stderr)
    capped = run_cli("topics", "apply", "--dev", env=env)
    assert capped.returncode == 0, capped.stderr
    assert (
        f"--dev: the cluster has 1 broker(s), so {TOPIC_COUNT} topic(s) get replication factor 1"
        in (capped.stdout)
    )
    described = run_cli("topics", "describe", env=env)
    row = next(line for line in described.stdout.splitlines() if line.startswith("orders "))
    assert row.split()[1:4] == ["6", "1", "1"]
    again = run_cli("topics", "apply", "--dev", env=env)
    assert "no changes" in again.stdout


@pytest.mark.usefixtures("local_cluster")
def test_kill_and_start_refuse_unknown_node_ids() -> None:
    for command in ("kill", "start"):
        result = run_cli("cluster", command, "7")
        assert result.returncode == 2
        assert "no node 7 in the local cluster (nodes: 1, 2, 3)" in _one_line_error(result.stderr)


def test_an_interrupted_start_stops_the_nodes_it_launched(
    local_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during `cluster up` left all three JVMs running. The interrupt is raised
    where Ctrl-C lands in practice: while the start waits for the nodes to register."""
    env = scratch_cluster_env(tmp_path, local_cluster)
    scratch = LocalCluster(Path(env["ECOM_CLUSTER_DIR"]), int(env["ECOM_CLUSTER_PORT_BASE"]))

    def interrupted(*_: object) -> None:
        assert all(node.pid() for node in scratch.nodes()), "every node was launched"
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalCluster, "_wait_registered", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scratch.up(brokers=1, insecure=True)
    assert [node.pid() for node in scratch.nodes()] == [None]
