"""A throw-away PostgreSQL server for the test session (Debian's packages).

ECOM_TEST_POSTGRES_URL names a server you run yourself; otherwise initdb + pg_ctl start
one on a free loopback port, as the `postgres` user when the tests run as root (the
server refuses to run as root), and stop it at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import wait_for


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL server; yield the URL of its `postgres` database."""
    if url := os.environ.get("ECOM_TEST_POSTGRES_URL"):
        yield url
        return
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:  # a missing part fails the test, in CI or not
        pytest.fail(
            "PostgreSQL is not installed: `make test` installs it (make system-deps), or "
            "set ECOM_TEST_POSTGRES_URL to a server of yours"
        )
    root = Path(tempfile.mkdtemp(prefix="ecom-pg-"))
    root.chmod(0o777)
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run(_as_server_user(list(args)), check=True, capture_output=True)

    run(initdb, "-D", str(data), "--auth=trust", "--username=postgres", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create a database of a test's own; return its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = server_url.rsplit("/", 1)[0]
    wait_for(lambda: _answers(f"{base}/{name}"), 10, f"database {name}")
    return f"{base}/{name}"


def _answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url):
            return True
    except psycopg.OperationalError:
        return False
