"""API keys and request guards for the two HTTP APIs.

A key is 32 random bytes shown once when it is made; only its SHA-256 is stored (a
key this long needs no slow hash: nobody can guess it from its digest). Each key has
a scope: `commands` (the command API) or `queries` (the query API). A request without a
valid key gets 401, with a key of the other scope 403; `/health*`, `/metrics` and the
API docs stay open and tell nothing secret. Bodies over a limit get 413 before
anything reads them.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecom.asgi import Asgi, Message, Receive, Scope, Send
from ecom.errors import BadInput
from ecom.private import private_folder, tighten

SCOPES = ("commands", "queries")
MAX_BODY_BYTES = 1_048_576
OPEN_PATHS = ("/health", "/livez", "/readyz", "/metrics", "/docs", "/openapi.json", "/")
KEY_PREFIX = "ecom_"
# The request state's name for the client: the digest of the key it presented, set by
# the guard on every request it lets through to a protected route.
CLIENT = "client"


@dataclass(frozen=True)
class KeyInfo:
    """A stored key, without its secret."""

    name: str
    scope: str
    created_at: float


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


NAME_MAX = 100  # and printable: one line in `ecom keys list`


class ApiKeys:
    """The keys of this shop, in a SQLite file of mode 0600 (in folders of 0700 when it
    makes them). A file others may read or write is tightened to 0600, and `notes` says
    so: whoever could swap it could let their own key in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notes: list[str] = []
        try:
            if str(path) != ":memory:":
                private_folder(path.parent)
                path.touch(mode=0o600, exist_ok=True)
                self.notes = tighten(path)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS api_keys (name TEXT PRIMARY KEY, scope TEXT NOT NULL,"
                " digest TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)"
            )
        except (OSError, sqlite3.Error) as error:
            raise BadInput(f"cannot use {path} as the API keys file (ECOM_API_KEYS_FILE): "
                           f"{getattr(error, 'strerror', None) or error}") from error  # fmt: skip

    def create(self, name: str, scope: str) -> str:
        """Make a key and return it: the only time anybody sees it."""
        if scope not in SCOPES:
            raise BadInput(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
        if not name.strip() or not name.isprintable() or len(name) > NAME_MAX:
            raise BadInput(f"a key's name is 1 to {NAME_MAX} printable characters, no line "
                           f"breaks: not {name[:40]!r}")  # fmt: skip
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?)", (name, scope, _digest(key), time.time())
            )
        except sqlite3.IntegrityError as error:
            raise BadInput(f"a key named {name!r} exists; revoke it first") from error
        return key

    def revoke(self, name: str) -> None:
        """Delete a key; requests with it get 401 from then on."""
        if self._db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount == 0:
            raise BadInput(f"no key named {name!r}")

    def list(self) -> list[KeyInfo]:
        rows = self._db.execute("SELECT name, scope, created_at FROM api_keys ORDER BY name")
        return [KeyInfo(*row) for row in rows]

    def scope_of(self, key: str) -> str | None:
        """Return the scope of a presented key, or None when it is no key of ours."""
        row = self._db.execute(
            "SELECT scope FROM api_keys WHERE digest = ?", (_digest(key),)
        ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()


class Guard:
    """ASGI middleware: body limit and bearer key of one scope, before the app reads."""

    def __init__(self, app: Asgi, keys: ApiKeys, scope: str, max_body: int) -> None:
        self.app, self.keys, self.scope, self.max_body = app, keys, scope, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope["path"], headers)
        if refusal is None and _protected(scope["path"]):
            # Who asks, for what a client keeps to itself (its idempotency keys).
            scope.setdefault("state", {})[CLIENT] = _digest(_bearer(headers))
        # Without Content-Length or Transfer-Encoding a request has no body (RFC 9112
        # 6.3): nothing to read. A Transfer-Encoding header always means read and count.
        streamed = "transfer-encoding" in headers
        if refusal is None and streamed:
            body = await self._read_limited(receive)
            if body is None:
                refusal = 413, f"request body over {self.max_body} bytes"
            else:
                receive = _replay(body, receive)
        if refusal:
            await _answer(send, *refusal)
            return
        await self.app(scope, receive, send)

    def _refusal(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if _protected(path):
            key = _bearer(headers)
            if not key:
                return 401, "an API key is required: Authorization: Bearer <key>"
            found = self.keys.scope_of(key)
            if found is None:
                return 401, "unknown API key"
            if found != self.scope:
                return 403, f"this key's scope is {found}; this API needs a {self.scope} key"
        length = headers.get("content-length", "0").strip()
        if not length.isdigit() or int(length) > self.max_body:
            return 413, f"request body over {self.max_body} bytes"
        return None

    async def _read_limited(self, receive: Receive) -> bytes | None:
        """Read a chunked body (Transfer-Encoding) whole; None once it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _protected(path: str) -> bool:
    return path not in OPEN_PATHS and not path.startswith("/static/")


def _bearer(headers: dict[str, str]) -> str:
    """Return the key a request presents (Authorization: Bearer), or ''."""
    kind, _, key = headers.get("authorization", "").partition(" ")
    return key.strip() if kind.lower() == "bearer" else ""


def _replay(body: bytes, then: Receive) -> Receive:
    """Hand a body already read to the app as one message, then the real messages
    (a disconnect, for a streamed answer)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _answer(send: Send, status: int, detail: str) -> None:
    body = ('{"detail": "' + detail.replace('"', "'") + '"}').encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def protect(app: Any, keys: ApiKeys, scope: str, max_body: int = MAX_BODY_BYTES) -> None:
    """Require a key of `scope` on every route of a FastAPI app but the open ones."""
    app.add_middleware(Guard, keys=keys, scope=scope, max_body=max_body)
