"""`ecom serve query --workers N`: N processes on one port, restarted when one dies,
/metrics summed over all of them, none outliving the command."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import httpx
import pytest

from bench.base import child_pids
from ecom.apikeys import ApiKeys
from ecom.process import Spec, kill, spawn
from tests.support import REPO, alive, free_port, run_cli, wait_for


def _env(tmp_path: Path) -> tuple[dict[str, str], str]:
    keys = ApiKeys(tmp_path / "keys.db")
    key = keys.create("test", "queries")
    keys.close()
    env = {"ECOM_API_KEYS_FILE": str(tmp_path / "keys.db"),
           "ECOM_STORE": f"sqlite:///{tmp_path / 'view.db'}"}  # fmt: skip
    return env, key


def test_workers_share_the_port_sum_their_metrics_and_end_with_the_command(
    tmp_path: Path,
) -> None:
    env, key = _env(tmp_path)
    port = free_port()
    args = ("serve", "query", "--port", str(port), "--no-watch", "--workers", "2")
    command = spawn(Spec("query", args, env, tmp_path / "query.log", REPO))
    url = f"http://127.0.0.1:{port}"

    def health() -> None:  # a new connection each time: the kernel picks the process
        httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {key}"}).raise_for_status()

    def both(unlike: int = 0) -> list[int] | None:
        found = child_pids(command.pid)
        return found if len(found) == 2 and unlike not in found else None

    try:
        first = wait_for(both, 60, "two API processes")
        wait_for(lambda: _answers(url), 60, "the API to answer")
        second = run_cli(*args, env=env, timeout=60)
        assert second.returncode != 0, "a second command on the same port"
        assert f"cannot serve on 127.0.0.1:{port}" in second.stderr
        for _ in range(20):
            health()
        os.kill(first[0], signal.SIGKILL)  # what it counted stays counted
        again = wait_for(lambda: both(unlike=first[0]), 60, "the killed process replaced")
        wait_for(lambda: _answers(url), 60, "the API to answer")
        for _ in range(20):
            health()
        metrics = httpx.get(f"{url}/metrics").text
        counted = re.search(r'^ecom_http_requests_total\{[^}]*route="/health"[^}]*\} (\S+)$',
                            metrics, re.M)  # fmt: skip
        assert counted, metrics
        assert float(counted.group(1)) == 40.0
    finally:
        kill(command)  # SIGKILL: no chance to stop its children itself
    wait_for(lambda: not any(alive(p) for p in again), 60, "the API processes to end with it")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_port_taken_by_another_program_is_one_line_and_no_process(tmp_path: Path) -> None:
    env, _ = _env(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("serve", "query", "--port", str(port), "--no-watch", "--workers", "2",
                         env=env, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args", [("serve", "query", "--no-watch"), ("serve", "commands", "--bootstrap", "127.0.0.1:1")]
)
def test_one_process_says_where_it_serves_as_workers_do(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env, _ = _env(tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    command = spawn(Spec("serve", (*args, "--port", str(port)), env, log, REPO))
    try:
        wait_for(lambda: "serving on" in log.read_text(), 60, "the line saying where")
        line = next(x for x in log.read_text().splitlines() if "serving on" in x)
        assert line.startswith(f"serving on http://127.0.0.1:{port} (pid {command.pid})")
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}"), 60, "the API to answer")
    finally:
        kill(command)


def test_one_process_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    env, _ = _env(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("serve", "query", "--port", str(port), "--no-watch", env=env, timeout=60)
    assert result.returncode == 4
    assert result.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}")
    assert result.stderr.count("\n") == 1
