"""Idempotency keys for the command API: a client that retries a POST with the same
`Idempotency-Key` header gets the first answer back, and nothing is published again.

Answers are kept in a small SQLite file (ECOM_IDEMPOTENCY_DB, default
.ecom/idempotency.db) for KEEP_S, so a retry after an API restart is recognised too.
Keys are the client's own: each API key has its own (a key is kept under the digest of
the API key that sent it), so two clients never see or block each other's answers. A
key reused by one client for another request (another path or body) is refused with
422; two requests of one client with one key at the same time are served one after
the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ecom.errors import BadInput, StoreError

KEEP_S = 24 * 3600.0
MAX_KEY = 200
# `answers` (before keys were per client) is dropped: its answers had no owner to give
# them to, and would have been forgotten within a day anyway.
SCHEMA = """DROP TABLE IF EXISTS answers;
CREATE TABLE IF NOT EXISTS client_answers (
    client TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, answer TEXT NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (client, key))"""


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """Return what identifies a request, for comparing retries with the first one."""
    canonical = json.dumps([method, path, body], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    """The first answer to every key of every client, for a day."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(SCHEMA)
            self._db.execute("DELETE FROM client_answers WHERE at < ?", (time.time() - KEEP_S,))
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the idempotency keys {path}: {error}") from error

    async def once(
        self,
        client: str,
        key: str,
        request: str,
        answer: Callable[[], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Return the answer first given to client for key, or make it now and keep it."""
        if not key or len(key) > MAX_KEY:
            raise BadInput(f"Idempotency-Key must be 1 to {MAX_KEY} characters")
        lock = self._locks.setdefault((client, key), asyncio.Lock())
        async with lock:
            kept = self._find(client, key, request)
            if kept is not None:
                return kept
            made = await answer()
            self._keep(client, key, request, made)
        self._locks.pop((client, key), None)
        return made

    def _find(self, client: str, key: str, request: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT fingerprint, answer FROM client_answers WHERE client = ? AND key = ?",
                (client, key),
            ).fetchone()
        if row is None:
            return None
        if row[0] != request:
            raise BadInput(
                f"Idempotency-Key {key!r} was used for another request; use a new key "
                "for a new request"
            )
        found: dict[str, Any] = json.loads(row[1])
        return found

    def _keep(self, client: str, key: str, request: str, answer: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO client_answers VALUES (?, ?, ?, ?, ?)",
                (client, key, request, json.dumps(answer), time.time()),
            )

    def close(self) -> None:
        self._db.close()
