"""Processes are supervised: `ecom worker all` restarts a child that dies and gives up,
naming it, when one keeps dying; children never outlive their supervisor; a worker told
to stop stops, even with no broker to talk to."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from ecom.cluster import LocalCluster
from ecom.kafka import GroupAdmin
from ecom.process import RESTARTS_ENV, RestartPolicy, Spec, Supervisor, kill, spawn, stop, wait
from ecom.topology import FLOW_SERVICES, Topology
from tests.conftest import KafkaCluster
from tests.support import REPO, alive, free_port, run_cli, scratch_cluster_env, wait_for

pytestmark = pytest.mark.kafka


def children_of(pid: int) -> dict[str, int]:
    """The `ecom worker X` processes whose parent is pid: service -> pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == pid and b"worker" in command:
            found[command[command.index(b"worker") + 1].decode()] = int(entry.name)
    return found


def _all(topology: Topology, bootstrap: str, **env: str) -> Spec:
    env = {"ECOM_TOPIC_PREFIX": topology.prefix, **env}
    return Spec("workers", ("worker", "all", "--bootstrap", bootstrap), env, cwd=REPO)


def test_a_dead_child_is_restarted_and_a_killed_supervisor_takes_its_children_along(
    kafka: KafkaCluster, topology: Topology
) -> None:
    supervisor = spawn(_all(topology, kafka.bootstrap))

    def workers(unlike: int = 0) -> dict[str, int] | None:
        """The four workers, once all run (and pricing is not the pid `unlike`)."""
        found = children_of(supervisor.pid)
        ready = len(found) == len(FLOW_SERVICES) and found["pricing"] != unlike
        return found if ready else None

    try:
        first = wait_for(workers, 60, "four workers")
        assert sorted(first) == sorted(FLOW_SERVICES)
        os.kill(first["pricing"], signal.SIGKILL)
        restarted = wait_for(lambda: workers(unlike=first["pricing"]), 60, "pricing again")
        assert restarted["inventory"] == first["inventory"], "the others were left alone"
    finally:
        kill(supervisor)  # SIGKILL: no chance to stop its children itself
    pids = list(restarted.values())
    wait_for(lambda: not any(alive(p) for p in pids), 60, "the workers to end with it")


def test_a_child_that_keeps_dying_stops_the_supervisor_naming_it(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    spec = _all(topology, kafka.bootstrap, ECOM_FAULTS="crash-at-worker-start",
                ECOM_RESTART_BACKOFF_S="0.2")  # fmt: skip
    supervisor = spawn(Spec(spec.name, spec.args, spec.env, tmp_path / "sup.log", REPO))
    try:
        code = wait(supervisor, 120)
    finally:
        if supervisor.alive():
            kill(supervisor)
    log = (tmp_path / "sup.log").read_text()
    assert code == 7, log[-2000:]
    assert "error: " in log
    assert "exited 5 times within 60s" in log.splitlines()[-1]
    assert any(s in log.splitlines()[-1] for s in FLOW_SERVICES)


def test_a_restarted_worker_counts_its_restarts_by_reason(
    kafka: KafkaCluster, topology: Topology
) -> None:
    args = ("worker", "pricing", "--bootstrap", kafka.bootstrap)
    env = {"ECOM_TOPIC_PREFIX": topology.prefix, "ECOM_FAULTS": "crash-at-worker-start"}
    fast = RestartPolicy(first_backoff_s=0.1, max_backoff_s=0.1, max_failures=10)
    with Supervisor(policy=fast) as supervisor:
        supervisor.start(Spec("pricing", (*args, "--metrics-port", "0"), env, cwd=REPO))

        def restarted_twice() -> bool:
            supervisor.check()
            return supervisor.restarts.get("pricing", 0) >= 2

        wait_for(restarted_twice, 60, "two restarts", 0.05)
        handed = supervisor.running["pricing"].spec.env
    assert supervisor.reasons == {"pricing": {"signal-sigkill": 2}}
    assert json.loads(handed[RESTARTS_ENV]) == {"signal-sigkill": 2}, "the child is told"
    port = free_port()
    told = {**handed, "ECOM_FAULTS": ""}
    child = spawn(Spec("pricing", (*args, "--metrics-port", str(port)), told, cwd=REPO))
    try:
        line = 'ecom_restarts_total{reason="signal-sigkill",service="pricing"} 2.0'
        wait_for(lambda: line in _scrape(port), 60, "the worker's restart count")
    finally:
        stop(child)


def _scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def test_a_worker_asked_to_stop_stops_even_when_its_broker_is_gone(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    env = scratch_cluster_env(tmp_path, local_cluster) | {"KAFKA_BOOTSTRAP_SERVERS": ""}
    # Plaintext: this test's own admin client knows only the session cluster's credentials.
    up = run_cli("cluster", "up", "--brokers", "1", "--insecure", env=env, timeout=180)
    assert up.returncode == 0
    try:
        assert run_cli("topics", "apply", "--dev", env=env).returncode == 0
        scratch = LocalCluster(Path(env["ECOM_CLUSTER_DIR"]), int(env["ECOM_CLUSTER_PORT_BASE"]))
        spec = Spec("inventory", ("worker", "inventory", "-v"), env, tmp_path / "w.log", REPO)
        worker = spawn(spec)
        # Running: it has joined its group and holds partitions.
        group = Topology.load(REPO / "topics.yaml").flow_app("inventory")
        admin = GroupAdmin(scratch.bootstrap_servers())
        wait_for(lambda: any(m.partitions for m in admin.describe(group).members), 120, "join")
        scratch.kill(1)  # the only broker: gone
        started = time.monotonic()
        code = stop(worker, grace=60)
        took = time.monotonic() - started
    finally:
        run_cli("cluster", "down", "--wipe", env=env, timeout=120)
    assert code in (0, 128 + signal.SIGTERM), code
    assert took < 59, "it stopped by itself, before the test's SIGKILL"


def test_a_worker_without_its_topics_stops_at_once_naming_one(home_env: dict[str, str]) -> None:
    """It logged one error and then sat there, its /readyz saying ready."""
    env = home_env | {"ECOM_TOPIC_PREFIX": "nosuch-"}
    result = run_cli("worker", "order", "--metrics-port", "0", env=env, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "topic nosuch-" in result.stderr
    assert "is missing, or not granted to this client" in result.stderr
