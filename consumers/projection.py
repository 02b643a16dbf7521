"""What a projection is: a pure fold of events into rows.

A projection names the topics it reads and the row types it keeps. For each event it
says which rows it needs (`keys`) and returns them changed (`evolve`), without I/O.
`Projection.apply` makes every fold idempotent: each row remembers the last offset it
applied from every stream (topic/partition), so an event applied twice changes nothing.
The runner owns I/O: it loads rows, applies a batch, and stores rows and offsets in one
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, ClassVar, Self

from schemas import Event

Key = tuple[str, ...]
RowKey = tuple[type["Row"], Key]


@dataclass(frozen=True, order=True)
class Position:
    """Where an event sits in the log (topic is the name in topics.yaml, unprefixed)."""

    topic: str
    partition: int
    offset: int

    @property
    def stream(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(frozen=True)
class Envelope:
    """An event and where it came from."""

    event: Event
    position: Position


@dataclass(frozen=True)
class Table:
    """How a row type is stored: table name, key columns, typed columns, indexes."""

    name: str
    key: tuple[str, ...]
    columns: dict[str, str]
    indexes: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Row:
    """A frozen view row. Subclasses declare TABLE and their fields; JSON fields are
    stored as text, datetimes as ISO-8601 text."""

    TABLE: ClassVar[Table]
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset()
    applied: Mapping[str, int] = field(default_factory=dict, kw_only=True)
    updated_at: datetime | None = field(default=None, kw_only=True)

    @property
    def key(self) -> Key:
        return tuple(str(getattr(self, name)) for name in self.TABLE.key)

    def seen(self, position: Position) -> bool:
        """Tell whether this row already applied the event at position."""
        return self.applied.get(position.stream, -1) >= position.offset

    def marked(self, position: Position, at: datetime) -> Self:
        """Return the row marked as having applied the event at position (time at)."""
        applied = {**self.applied, position.stream: position.offset}
        latest = at if self.updated_at is None else max(self.updated_at, at)
        return replace(self, applied=applied, updated_at=latest)

    def to_record(self) -> dict[str, Any]:
        """Return the row as column values."""
        record: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in self.JSON_FIELDS or item.name == "applied":
                value = json.dumps(value, sort_keys=True, separators=(",", ":"))
            elif isinstance(value, datetime):
                value = value.isoformat()
            record[item.name] = value
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Build the row back from column values."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            value = record[item.name]
            if item.name in cls.JSON_FIELDS or item.name == "applied":
                value = _thaw(json.loads(value))
            elif value is not None and item.name in cls.datetime_fields():
                value = datetime.fromisoformat(value)
            values[item.name] = value
        return cls(**values)

    @classmethod
    def datetime_fields(cls) -> frozenset[str]:
        return frozenset({"updated_at"} | set(getattr(cls, "DATETIME_FIELDS", ())))


def _thaw(value: Any) -> Any:
    """JSON lists come back as tuples, so rows stay immutable and comparable."""
    if isinstance(value, list):
        return tuple(_thaw(v) for v in value)
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def columns(**extra: str) -> dict[str, str]:
    """Return a table's columns: the given ones plus the bookkeeping every row has."""
    return {**extra, "applied": "TEXT", "updated_at": "TEXT"}


class Projection:
    """A named fold over some topics into some row types."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]
    row_types: ClassVar[tuple[type[Row], ...]]

    def keys(self, event: Event) -> list[RowKey]:
        """Return the rows an event reads and may change (none: it is ignored)."""
        raise NotImplementedError

    def evolve(self, rows: dict[RowKey, Row | None], event: Event) -> dict[RowKey, Row]:
        """Return the rows the event changes. Pure; raises InvalidEvent if it cannot apply."""
        raise NotImplementedError

    def apply(self, rows: Mapping[RowKey, Row | None], envelope: Envelope) -> dict[RowKey, Row]:
        """Apply one event idempotently: rows that saw its position are left alone."""
        keys = self.keys(envelope.event)
        if not keys:
            return {}
        current = {key: rows.get(key) for key in keys}
        if any(row is not None and row.seen(envelope.position) for row in current.values()):
            return {}
        changed = self.evolve(current, envelope.event)
        at = envelope.event.occurred_at
        return {key: row.marked(envelope.position, at) for key, row in changed.items()}
