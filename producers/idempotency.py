"""Idempotency keys for the command API: a client that retries a POST with the same
`Idempotency-Key` header gets the first answer back, and nothing is published again.

Answers are kept in a small SQLite file (ECOM_IDEMPOTENCY_DB, default
.ecom/idempotency.db) for KEEP_S, so a retry after an API restart is recognised too.
A key reused for another request (another path or body) is refused with 422; two
requests with one key at the same time are served one after the other.
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
SCHEMA = """CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, answer TEXT NOT NULL, at REAL NOT NULL)"""


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """Return what identifies a request, for comparing retries with the first one."""
    canonical = json.dumps([method, path, body], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    """The first answer to every key, for a day."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(SCHEMA)
            self._db.execute("DELETE FROM answers WHERE at < ?", (time.time() - KEEP_S,))
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the idempotency keys {path}: {error}") from error

    async def once(
        self, key: str, request: str, answer: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Return the answer first given for key, or make it now and keep it."""
        if not key or len(key) > MAX_KEY:
            raise BadInput(f"Idempotency-Key must be 1 to {MAX_KEY} characters")
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            kept = self._find(key, request)
            if kept is not None:
                return kept
            made = await answer()
            self._keep(key, request, made)
        self._locks.pop(key, None)
        return made

    def _find(self, key: str, request: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT fingerprint, answer FROM answers WHERE key = ?", (key,)
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

    def _keep(self, key: str, request: str, answer: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                (key, request, json.dumps(answer), time.time()),
            )

    def close(self) -> None:
        self._db.close()
