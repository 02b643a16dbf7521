"""Helpers shared by the tests: run the CLI, poll for a condition, name things uniquely."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

from ecom.apikeys import ApiKeys

if TYPE_CHECKING:
    from ecom.cluster import LocalCluster

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
TOPIC_COUNT = len(yaml.safe_load((REPO / "topics.yaml").read_text())["topics"])


def unique(prefix: str = "t") -> str:
    """Return a short name no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run `ecom ARGS` in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ecom", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input_text,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll condition until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Tell whether a process still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return state.exists() and state.read_text().rpartition(")")[2].split()[0] not in ("Z", "X")


def free_port() -> int:
    """Return a loopback port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_port_base() -> int:
    """Return a port base whose broker and controller ports are free right now."""
    for base in range(29092, 40000, 7):
        if all(_free(port) for port in (base, base + 100)):
            return base
    raise AssertionError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def scratch_cluster_env(tmp_path: Path, local: LocalCluster | None = None) -> dict[str, str]:
    """Env for a second, throw-away cluster in tmp_path (sharing the jars if given)."""
    root = tmp_path / "cluster"
    root.mkdir()
    if local is not None:
        (root / "lib").symlink_to(local.lib_dir)
    return {"ECOM_CLUSTER_DIR": str(root), "ECOM_CLUSTER_PORT_BASE": str(_free_port_base())}


def keyed(scope: str) -> tuple[ApiKeys, dict[str, str]]:
    """Return an in-memory key store with one key of `scope`, and the headers that send it."""
    keys = ApiKeys(Path(":memory:"))
    return keys, {"Authorization": f"Bearer {keys.create('test', scope)}"}
