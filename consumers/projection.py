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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cache
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, ClassVar, NamedTuple, Self

from schemas import Event

Key = tuple[str, ...]
RowKey = tuple[type["Row"], Key]


class Position(NamedTuple):
    """Where an event sits in the log (topic is the name in topics.yaml, unprefixed).

    Named tuples, not frozen dataclasses: two are made per record read, and a tuple is
    made in a fraction of the time."""

    topic: str
    partition: int
    offset: int

    @property
    def stream(self) -> str:
        return f"{self.topic}/{self.partition}"


class Envelope(NamedTuple):
    """An event and where it came from."""

    event: Event
    position: Position
    replayed: bool = False  # read again by `ecom replay`: nothing with side effects fires


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

    def changed(self, **changes: Any) -> Self:
        """Return a copy with some fields changed (dataclasses.replace, minus its cost:
        rows are built by our own code, so __init__ has nothing to check)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    def seen(self, position: Position) -> bool:
        """Tell whether this row already applied the event at position."""
        return self.applied.get(position.stream, -1) >= position.offset

    def marked(self, position: Position, at: datetime) -> Self:
        """Return the row marked as having applied the event at position (time at)."""
        return self._marked(position.stream, position.offset, at)

    def _marked(self, stream: str, offset: int, at: datetime) -> Self:
        """Return a marked copy (stream: the position's, worked out by the caller)."""
        copy = self.changed()
        copy._mark(stream, offset, at)
        return copy

    def _mark(self, stream: str, offset: int, at: datetime) -> None:
        """Mark this row itself; only for a row nobody else has seen yet."""
        values = self.__dict__
        values["applied"] = {**self.applied, stream: offset}
        if self.updated_at is None or self.updated_at < at:
            values["updated_at"] = at

    def to_values(self) -> list[Any]:
        """Return the row's column values, in its table's column order: JSON fields as
        text, datetimes as ISO-8601 text, a column that is no field (none today) as the
        row's attribute of that name."""
        values = self.__dict__
        return [values[name] if how is None else how(self, name) for name, how in self._columns()]

    def to_record(self) -> dict[str, Any]:
        """Return the row as column values, by column name."""
        return dict(zip(self.TABLE.columns, self.to_values(), strict=True))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Build the row back from column values."""
        values = {name: record[name] for name in cls._field_names()}
        for name in cls._json_fields():
            values[name] = _thaw(json.loads(values[name]))
        for name in cls._datetime_fields():
            if values[name] is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)

    @classmethod
    @cache
    def _columns(cls) -> tuple[tuple[str, Callable[[Row, str], Any] | None], ...]:
        """Each column, and how to get its value from a row (None: as it is)."""
        json, times, stored = cls._json_fields(), cls._datetime_fields(), cls._field_names()
        return tuple(
            (name, _as_json if name in json else _as_time if name in times
             else None if name in stored else getattr)
            for name in cls.TABLE.columns
        )  # fmt: skip

    @classmethod
    @cache
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(item.name for item in fields(cls))

    @classmethod
    @cache
    def _json_fields(cls) -> tuple[str, ...]:
        return ("applied", *sorted(cls.JSON_FIELDS))

    @classmethod
    @cache
    def _datetime_fields(cls) -> tuple[str, ...]:
        return ("updated_at", *getattr(cls, "DATETIME_FIELDS", ()))


def _json_encoder() -> Callable[[Any], str]:
    """Return JSONEncoder(sort_keys=True, separators=(",", ":")).encode without the cost
    of its first step: it makes json's C encoder anew on every call; this makes it once.
    The same text (tests/unit/test_fast_path.py); the plain method without a C encoder."""
    plain = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
    if c_make_encoder is None:
        return plain.encode
    encode = c_make_encoder(
        None, plain.default, encode_basestring_ascii, None, ":", ",", True, False, True
    )
    return lambda value: "".join(encode(value, 0))


# Keys sorted: a row's JSON must not depend on the order its streams were applied in.
_ENCODE = _json_encoder()


def _as_json(row: Row, name: str) -> str:
    return _ENCODE(row.__dict__[name])


def _as_time(row: Row, name: str) -> str | None:
    value = row.__dict__[name]
    return None if value is None else value.isoformat()


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
    # True: every row an event touches is keyed by that event's record key, so records
    # of different partition numbers never share a row (a parallel replay needs it).
    partition_local: ClassVar[bool] = False

    def keys(self, event: Event) -> list[RowKey]:
        """Return the rows an event reads and may change (none: it is ignored)."""
        raise NotImplementedError

    def evolve(self, rows: dict[RowKey, Row | None], event: Event) -> dict[RowKey, Row]:
        """Return the rows the event changes: rows given, or new ones no one else holds
        (apply marks those in place). Pure; raises InvalidEvent if it cannot apply."""
        raise NotImplementedError

    def apply(
        self,
        rows: Mapping[RowKey, Row | None],
        envelope: Envelope,
        keys: list[RowKey] | None = None,
    ) -> dict[RowKey, Row]:
        """Apply one event idempotently: rows that saw its position are left alone.
        `keys` are the event's keys, if the caller has asked for them already."""
        if keys is None:
            keys = self.keys(envelope.event)
        if not keys:
            return {}
        position = envelope.position
        stream, offset = position.stream, position.offset  # Row.seen, worked out once
        current = {key: rows.get(key) for key in keys}
        for row in current.values():
            if row is not None and row.applied.get(stream, -1) >= offset:
                return {}
        changed = self.evolve(current, envelope.event)
        at = envelope.event.occurred_at
        for key, row in changed.items():
            if any(row is given for given in current.values()):
                changed[key] = row._marked(stream, offset, at)
            else:  # a row evolve just made: nobody else holds it, so mark it in place
                row._mark(stream, offset, at)
        return changed
