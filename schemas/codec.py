"""The only place where event bytes exist.

Encoding goes through writers compiled per schema (schemas.avro_writer) and is checked
byte for byte against fastavro in the tests; decoding uses fastavro, which resolves an
older writer schema into the current one.

Wire format: Avro single-object encoding - the marker C3 01, the writer schema's 8-byte
CRC-64-AVRO fingerprint (little-endian), then the Avro binary body. Any reader can find
the writer schema from the fingerprint; older writer schemas are resolved into the
current reader schema. Record headers follow the CloudEvents Kafka binding.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError

from schemas.avro_writer import Write, compile_writer
from schemas.base import EVENT_TYPES, Event
from schemas.errors import DecodeError, InvalidEvent, NotCompilable, UnknownSchema
from schemas.registry import SchemaRegistry, SchemaVersion, default_registry

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
CONTENT_TYPE = "application/avro"
Headers = list[tuple[str, str | bytes | None]]


class Codec:
    """Turn events into bytes and back, with the schemas of one registry."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or default_registry()
        missing = set(EVENT_TYPES) - set(self.registry.current)
        if missing:
            raise ValueError(f"no Avro schema for {sorted(missing)}")
        self._writers = {name: _writer(schema) for name, schema in self.registry.current.items()}

    def encode(self, event: Event) -> bytes:
        """Return the single-object encoding of event."""
        header, write = self._writers[event.event_type]
        buffer = bytearray(header)
        write(buffer, event)
        return bytes(buffer)

    def decode(self, payload: bytes | None) -> Event:
        """Return the event in payload, resolved into the current schema of its type."""
        writer = self.registry.by_fingerprint.get(_fingerprint(payload))
        if writer is None:
            raise UnknownSchema(
                f"unknown writer schema fingerprint {_fingerprint(payload).hex()}; "
                "it was written by a schema this code does not know"
            )
        reader = self.registry.current[writer.event_type]
        resolve_into = None if reader is writer else reader.parsed
        record = _read_body(payload, writer.parsed, resolve_into, writer.label)
        try:
            return EVENT_TYPES[writer.event_type].model_validate(record)
        except ValidationError as error:
            raise InvalidEvent(f"{writer.event_type}: {describe(error)}") from error

    def event_type(self, payload: bytes | None) -> str | None:
        """Return the event type a payload claims to be, without decoding it."""
        try:
            writer = self.registry.by_fingerprint.get(_fingerprint(payload))
        except DecodeError:
            return None
        return writer.event_type if writer else None


def _writer(schema: SchemaVersion) -> tuple[bytes, Write]:
    """Return the marker + fingerprint prefix and the body writer of a schema."""
    try:
        write = compile_writer(schema.raw)
    except NotCompilable:
        write = _fastavro_writer(schema.parsed)
    return MAGIC + schema.fingerprint, write


def _fastavro_writer(parsed: Any) -> Write:
    def write(buffer: bytearray, event: Any) -> None:
        body = io.BytesIO()
        schemaless_writer(body, parsed, event.model_dump(), disable_tuple_notation=True)
        buffer += body.getvalue()

    return write


def _fingerprint(payload: bytes | None) -> bytes:
    if payload is None or len(payload) < HEADER_SIZE or payload[:2] != MAGIC:
        raise DecodeError("not an Avro single-object encoded event (no C3 01 marker)")
    return payload[2:HEADER_SIZE]


def _read_body(payload: bytes | None, writer: Any, reader: Any, label: str) -> dict[str, Any]:
    assert payload is not None
    body = io.BytesIO(payload)
    body.seek(HEADER_SIZE)
    try:
        record = schemaless_reader(body, writer, reader)
    except Exception as error:
        raise DecodeError(f"corrupt Avro body for {label}: {error!r}") from error
    if not isinstance(record, dict):
        raise DecodeError(f"{label} body is not a record")
    if body.tell() != len(payload):
        raise DecodeError(f"{len(payload) - body.tell()} stray bytes after the {label} body")
    return record


def headers(event: Event, source: str) -> Headers:
    """Return the CloudEvents (Kafka binding, binary mode) headers of an event.

    The subject (the entity id) is the record key, so it is not repeated here.
    """
    return [
        _SPECVERSION,
        ("ce_id", event.event_id.encode()),
        ("ce_type", _ce_type(event.event_type)),
        ("ce_source", _encoded(source)),
        ("ce_time", event.occurred_at.isoformat().encode()),
        _CONTENT_TYPE,
    ]


_SPECVERSION = ("ce_specversion", b"1.0")
_CONTENT_TYPE = ("content-type", CONTENT_TYPE.encode())


@cache
def _ce_type(event_type: str) -> bytes:
    return EVENT_TYPES[event_type].avro_name().encode()


@cache
def _encoded(text: str) -> bytes:
    return text.encode()


def describe(error: ValidationError) -> str:
    """Return the first problem of a validation error as `field.path: message`."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}{suffix}"
