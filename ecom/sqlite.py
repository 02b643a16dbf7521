"""One SQLite file shared by the threads of a process: a connection per thread, WAL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ecom.errors import StoreError


class ThreadLocalDb:
    """Open the file (and its schema) once per thread, on first use."""

    def __init__(self, path: Path, schema: str, what: str) -> None:
        self.path = path
        self.schema = schema
        self.what = what  # "the gateway ledger": names the file in errors
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(self.schema)
            except (OSError, sqlite3.Error) as error:
                raise StoreError(f"cannot open {self.what} {self.path}: {error}") from error
            self._local.db = db
        return db
