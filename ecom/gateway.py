"""A simulated payment gateway, the kind a real one would be to talk to: the payment
worker of the order flow and the synchronous chain's payment service both call it.

Its answers are deterministic (the same order always gets the same answer; a share of
orders is declined, ECOM_GATEWAY_DECLINE_SHARE) and take a while (ECOM_GATEWAY_LATENCY_MS).
Every request carries an idempotency key derived from the payment id: the same key gets
the same answer and charges once, however often it is sent (a worker that crashed after
asking asks again). Charges and refunds go to a ledger, a SQLite file
(ECOM_GATEWAY_LEDGER, default .ecom/gateway.db), which the tests audit against the events.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ecom.sqlite import ThreadLocalDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL, authorized INTEGER NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (
    idempotency_key TEXT PRIMARY KEY, charge_key TEXT NOT NULL, order_id TEXT NOT NULL,
    amount_minor INTEGER NOT NULL, at TEXT NOT NULL);
"""


def declined(order_id: str, share: float) -> bool:
    """Tell whether the simulated gateway declines an order's payment."""
    digest = hashlib.sha256(order_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass(frozen=True)
class Charge:
    """One payment to authorize."""

    key: str  # the idempotency key
    order_id: str
    amount_minor: int
    currency: str


class Gateway:
    """Authorize and refund payments, once per idempotency key."""

    def __init__(self, ledger: Path, decline_share: float, latency_ms: float) -> None:
        self.decline_share = decline_share
        self.latency_ms = latency_ms
        self.ledger = Ledger(ledger)

    async def authorize(self, charges: list[Charge]) -> dict[str, bool]:
        """Authorize payments (concurrently, as a real gateway's calls would be); return
        each key's answer, the first one given for that key."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        answers = [(c, not declined(c.order_id, self.decline_share)) for c in charges]
        return await asyncio.to_thread(self.ledger.charge, answers)

    async def refund(self, key: str, charge_key: str) -> bool:
        """Give an authorized charge back, once per key; tell whether it was authorized."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        return await asyncio.to_thread(self.ledger.refund, key, charge_key)


class Ledger:
    """The gateway's book: charges and refunds by idempotency key (SQLite, WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = ThreadLocalDb(path, SCHEMA, "the gateway ledger")

    @property
    def _db(self) -> sqlite3.Connection:
        return self._file.db

    def charge(self, answers: list[tuple[Charge, bool]]) -> dict[str, bool]:
        """Record new charges; return every key's answer (the first one recorded)."""
        db = self._db
        now = datetime.now(UTC).isoformat()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO charges VALUES (?, ?, ?, ?, ?, ?)",
                [(c.key, c.order_id, c.amount_minor, c.currency, ok, now) for c, ok in answers],
            )
            keys = [c.key for c, _ in answers]
            marks = ",".join("?" * len(keys))  # placeholders only: the keys are parameters
            query = f"SELECT idempotency_key, authorized FROM charges WHERE idempotency_key IN ({marks})"  # noqa: S608, E501
            rows = db.execute(query, keys).fetchall()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return {key: bool(authorized) for key, authorized in rows}

    def refund(self, key: str, charge_key: str) -> bool:
        """Record a refund of an authorized charge (once per key)."""
        db = self._db
        row = db.execute(
            "SELECT order_id, amount_minor, authorized FROM charges WHERE idempotency_key = ?",
            (charge_key,),
        ).fetchone()
        if row is None or not row[2]:
            return False
        db.execute(
            "INSERT OR IGNORE INTO refunds VALUES (?, ?, ?, ?, ?)",
            (key, charge_key, row[0], row[1], datetime.now(UTC).isoformat()),
        )
        return True
