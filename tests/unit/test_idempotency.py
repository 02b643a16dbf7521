"""Idempotency keys are each client's own: a retry gets its first answer, another
client's key of the same name is another key."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ecom.errors import BadInput
from producers.idempotency import IdempotencyKeys, fingerprint

ORDER = fingerprint("POST", "/orders", {"user_id": "u-1"})
OTHER_ORDER = fingerprint("POST", "/orders", {"user_id": "u-2"})


def _answers(keys: IdempotencyKeys, *asked: tuple[str, str, str]) -> list[dict[str, Any]]:
    """Ask (client, key, request) in turn; each new request is answered with its number."""
    made = 0

    async def run() -> list[dict[str, Any]]:
        async def answer() -> dict[str, Any]:
            nonlocal made
            made += 1
            return {"event_id": f"e-{made}"}

        return [await keys.once(client, key, request, answer) for client, key, request in asked]

    return asyncio.run(run())


def test_two_clients_with_one_key_get_their_own_answers(tmp_path: Path) -> None:
    keys = IdempotencyKeys(tmp_path / "idempotency.db")
    answers = _answers(
        keys,
        ("client-a", "race-1", ORDER),
        ("client-b", "race-1", ORDER),  # not a's answer
        ("client-a", "race-1", ORDER),  # a's retry: a's answer
        ("client-b", "race-1", ORDER),
    )
    assert [a["event_id"] for a in answers] == ["e-1", "e-2", "e-1", "e-2"]
    # b's other request with the same key is b's business only, and a's key stays a's.
    assert _answers(keys, ("client-c", "race-1", OTHER_ORDER)) == [{"event_id": "e-1"}]
    with pytest.raises(BadInput, match="'race-1' was used for another request"):
        _answers(keys, ("client-a", "race-1", OTHER_ORDER))
    keys.close()


def test_a_file_from_before_keys_were_per_client_opens(tmp_path: Path) -> None:
    path = tmp_path / "idempotency.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE answers (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
        " answer TEXT NOT NULL, at REAL NOT NULL)"
    )
    old.execute("INSERT INTO answers VALUES ('race-1', ?, '{\"event_id\": \"old\"}', 0)", (ORDER,))
    old.commit()
    old.close()
    keys = IdempotencyKeys(path)
    assert _answers(keys, ("client-a", "race-1", ORDER)) == [{"event_id": "e-1"}]
    keys.close()
