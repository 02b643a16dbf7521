"""API keys: made once, stored hashed, scoped; the query API refuses requests without one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumers.api import create_app
from consumers.store import open_store
from ecom.apikeys import ApiKeys
from ecom.errors import BadInput
from ecom.kafka.security import write_private
from ecom.settings import redact
from tests.support import run_cli


def test_keys_are_shown_once_stored_hashed_in_a_private_file_and_revocable(
    tmp_path: Path,
) -> None:
    env = {"ECOM_API_KEYS_FILE": str(tmp_path / "keys.db")}
    made = run_cli("keys", "create", "ops", "--scope", "queries", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("ecom_")
    assert len(key) > 40
    keys_file = tmp_path / "keys.db"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert key.encode() not in keys_file.read_bytes()
    listed = run_cli("keys", "list", env=env)
    assert "ops" in listed.stdout
    assert "queries" in listed.stdout
    assert key not in listed.stdout
    again = run_cli("keys", "create", "ops", "--scope", "queries", env=env)
    assert again.returncode == 2
    assert again.stderr.strip() == "error: a key named 'ops' exists; revoke it first"
    wrong = run_cli("keys", "create", "x", "--scope", "everything", env=env)
    assert wrong.returncode == 2
    assert "Traceback" not in wrong.stderr
    store = ApiKeys(keys_file)
    assert store.scope_of(key) == "queries"
    assert run_cli("keys", "revoke", "ops", env=env).returncode == 0
    assert store.scope_of(key) is None
    gone = run_cli("keys", "revoke", "ops", env=env)
    assert (gone.returncode, gone.stderr.strip()) == (2, "error: no key named 'ops'")


def test_a_keys_file_open_to_others_is_tightened_to_0600_and_said_so(tmp_path: Path) -> None:
    loose = tmp_path / "loose.db"
    loose.touch()
    loose.chmod(0o644)
    wal = tmp_path / "loose.db-wal"  # left by an earlier process, as loose as its database
    wal.touch()
    wal.chmod(0o664)
    made = run_cli(
        "keys", "create", "a", "--scope", "queries", env={"ECOM_API_KEYS_FILE": str(loose)}
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("ecom_")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert made.stderr.splitlines() == [
        f"note: {loose} was mode 0644, open to others: made it 0600",
        f"note: {wal} was mode 0664, open to others: made it 0600",
    ]


def test_folders_made_for_secrets_are_0700_whatever_the_umask(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir(mode=0o755)
    previous = os.umask(0)
    try:
        keys = ApiKeys(tmp_path / "k" / "new" / "keys.db")
        keys.create("a", "commands")
        keys.close()
        write_private(tmp_path / "c" / "credentials" / "admin.properties", "password=x\n")
    finally:
        os.umask(previous)
    for folder in ("k", "k/new", "c/credentials"):
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((tmp_path / "k" / "new" / "keys.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "c/credentials/admin.properties").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o755  # found: left as it was


def test_the_query_api_wants_a_queries_key_but_health_and_metrics_stay_open(
    tmp_path: Path,
) -> None:
    keys = ApiKeys(Path(":memory:"))
    reader, writer = keys.create("reader", "queries"), keys.create("writer", "commands")
    with (
        open_store(f"sqlite:///{tmp_path / 'view.db'}") as store,
        TestClient(create_app(store, keys)) as client,
    ):
        assert client.get("/orders/o-1").status_code == 401
        assert client.get("/orders/o-1").headers["www-authenticate"] == "Bearer"
        bearer = {"Authorization": f"Bearer {writer}"}
        assert client.get("/orders/o-1", headers=bearer).status_code == 403
        bearer = {"Authorization": f"Bearer {reader}"}
        assert client.get("/orders/o-1", headers=bearer).status_code == 404
        assert client.get("/orders", headers=bearer).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200
        keys.revoke("reader")
        assert client.get("/orders", headers=bearer).status_code == 401


def test_a_store_url_password_never_reaches_a_message() -> None:
    assert redact("postgresql://ecom:s3cr@t@db:5432/view") == "postgresql://ecom:***@db:5432/view"
    assert redact("postgresql://db:5432/view") == "postgresql://db:5432/view"
    refused = run_cli("serve", "query", "--store", "mysql://shop:hunter2@db/view")
    assert refused.returncode == 2
    assert "hunter2" not in refused.stderr
    assert "mysql://shop:***@db/view" in refused.stderr


def test_a_query_string_password_is_redacted_too() -> None:
    assert redact("postgresql://db/view?user=a&password=hunter2&x=1") == (
        "postgresql://db/view?user=a&password=***&x=1"
    )


@pytest.mark.parametrize("name", ["bad\nname", " ", "x" * 101, "tab\there", "a\u2028b"])
def test_a_name_that_would_break_the_list_is_refused(tmp_path: Path, name: str) -> None:
    keys = ApiKeys(tmp_path / "keys.db")
    with pytest.raises(BadInput, match="a key's name is 1 to 100 printable characters"):
        keys.create(name, "queries")
    assert keys.list() == []


def test_a_keys_file_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    not_sqlite = tmp_path / "keys.db"
    not_sqlite.write_text("this is no database, but long enough to look like a file " * 10)
    for path in (tmp_path, not_sqlite):  # a folder; a file of something else
        result = run_cli("keys", "list", env={"ECOM_API_KEYS_FILE": str(path)})
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: cannot use {path} as the API keys file")
        assert result.stderr.count("\n") == 1
