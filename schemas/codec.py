"""The only place where event bytes exist.

Encoding goes through writers compiled per schema (schemas.avro_writer) and is checked
byte for byte against fastavro in the tests; decoding a body of the current schema goes
through readers compiled the same way (schemas.avro_reader), and a body of an older
writer schema through fastavro, which resolves it into the current one.

Wire format: Avro single-object encoding - the marker C3 01, the writer schema's 8-byte
CRC-64-AVRO fingerprint (little-endian), then the Avro binary body. Any reader can find
the writer schema from the fingerprint; older writer schemas are resolved into the
current reader schema. Record headers follow the CloudEvents Kafka binding.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from functools import cache, partial
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError
from pydantic_core import SchemaValidator

from schemas.avro_reader import Read, compile_reader
from schemas.avro_writer import Write, compile_writer
from schemas.base import CORE_PATTERNS, EVENT_TYPES, Event
from schemas.errors import BadInput, DecodeError, InvalidEvent, NotCompilable, UnknownSchema
from schemas.registry import SchemaRegistry, SchemaVersion, default_registry

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
CONTENT_TYPE = "application/avro"
Headers = list[tuple[str, str | bytes | None]]
Decode = Callable[[bytes | None], Event]


class Codec:
    """Turn events into bytes and back, with the schemas of one registry."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or default_registry()
        missing = set(EVENT_TYPES) - set(self.registry.current)
        if missing:
            raise ValueError(f"no Avro schema for {sorted(missing)}")
        self._writers = {name: _writer(schema) for name, schema in self.registry.current.items()}
        self._decoders: dict[bytes, Decode] = {}  # by writer fingerprint, made on first use

    def encode(self, event: Event) -> bytes:
        """Return the single-object encoding of event."""
        header, write = self._writers[event.event_type]
        buffer = bytearray(header)
        write(buffer, event)
        return bytes(buffer)

    def decode(self, payload: bytes | None) -> Event:
        """Return the event in payload, resolved into the current schema of its type."""
        fingerprint = _fingerprint(payload)
        decode = self._decoders.get(fingerprint)
        if decode is None:
            decode = self._decoders[fingerprint] = self._decoder(fingerprint)
        return decode(payload)

    def _decoder(self, fingerprint: bytes) -> Decode:
        writer = self.registry.by_fingerprint.get(fingerprint)
        if writer is None:
            raise UnknownSchema(
                f"unknown writer schema fingerprint {fingerprint.hex()}; "
                "it was written by a schema this code does not know"
            )
        return _decoder(writer, self.registry.current[writer.event_type])

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


def _decoder(writer: SchemaVersion, reader: SchemaVersion) -> Decode:
    """Return the decode function of one writer schema, with everything it needs at hand."""
    event_type = writer.event_type
    read_body = _body_reader(writer, reader)
    model = EVENT_TYPES[event_type]
    checked = model.__pydantic_validator__.validate_python
    fast = _fast_validator(model)

    def decode(payload: bytes | None) -> Event:
        record = read_body(payload)
        try:
            return fast(record)
        except ValidationError:
            pass  # refused: the model's own validator says why, in its words
        try:
            return checked(record)  # type: ignore[no-any-return]
        except ValidationError as error:
            raise InvalidEvent(f"{event_type}: {describe(error)}") from error

    return decode


@cache  # one twin per model, however many codecs: each costs a schema build
def _fast_validator(model: type[Event]) -> Callable[[dict[str, Any]], Event]:
    """Return a validator of `model` records that calls no Python function for ids,
    currencies and countries (these calls are most of what validating an event costs):
    the model's own schema with those checks as patterns pydantic-core runs itself. It
    builds the same event from the same record and refuses the same records; only the
    wording of its errors differs, so the codec asks the model's validator for that.

    pydantic-core reuses a finished model's validator for its schema, so the fast one
    builds an unfinished twin of the class, which then becomes the model itself (same
    memory layout: a subclass adding nothing)."""
    schema = model.__pydantic_core_schema__
    if schema["type"] != "model":  # a shape this does not know: no fast path
        return model.__pydantic_validator__.validate_python
    metaclass: Any = type(model)
    twin = metaclass(model.__name__, (model,), {"__module__": __name__})
    twin.__pydantic_complete__ = False
    fast = SchemaValidator(
        {**schema, "cls": twin, "schema": _in_core(schema["schema"])}, schema.get("config")
    ).validate_python
    become = object.__setattr__

    def validate(record: dict[str, Any]) -> Event:
        event = fast(record)
        become(event, "__class__", model)
        return event  # type: ignore[no-any-return]

    return validate


def _in_core(schema: Any) -> Any:
    """Return a model's field schemas with the checks of CORE_PATTERNS as patterns
    (nested models keep their own validators)."""
    if isinstance(schema, list):
        return [_in_core(item) for item in schema]
    if not isinstance(schema, dict) or schema.get("type") == "model":
        return schema
    if schema.get("type") == "function-after" and schema.get("schema") == {"type": "str"}:
        pattern = CORE_PATTERNS.get(schema["function"].get("function"))
        if pattern is not None:
            return {"type": "str", "pattern": pattern}
    return {key: _in_core(value) for key, value in schema.items()}


def _body_reader(writer: SchemaVersion, reader: SchemaVersion) -> Callable[[bytes | None], Any]:
    """Return the function reading a body of the writer schema as a record of the reader
    schema: a reader compiled from the schema when they are the same, else fastavro
    (which resolves an older writer schema into the current one)."""
    label = writer.label
    if reader is writer:
        try:
            return partial(_read_compiled, read=compile_reader(writer.raw), label=label)
        except NotCompilable:
            pass
    resolve_into = None if reader is writer else reader.parsed
    return partial(_read_body, writer=writer.parsed, reader=resolve_into, label=label)


def _read_compiled(payload: bytes | None, read: Read, label: str) -> dict[str, Any]:
    assert payload is not None
    try:
        record, end = read(payload, HEADER_SIZE)
    except IndexError as error:
        raise DecodeError(f"corrupt Avro body for {label}: it ends too early") from error
    except Exception as error:
        raise DecodeError(f"corrupt Avro body for {label}: {error!r}") from error
    if end != len(payload):
        raise DecodeError(f"{len(payload) - end} stray bytes after the {label} body")
    return record  # type: ignore[no-any-return]


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


# RFC 3986: the characters of a URI-reference (unreserved, reserved, percent-encoded),
# and the scheme a colon before the first slash must end.
_URI_REFERENCE = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


def check_source(source: str, what: str = "the CloudEvents source") -> str:
    """Return source if CloudEvents takes it as ce_source (a non-empty URI-reference),
    else raise BadInput naming `what`."""
    if not source:
        raise BadInput(f"{what} is empty: give a URI-reference such as /ecomstream/cli")
    if not _URI_REFERENCE.fullmatch(source):
        raise BadInput(
            f"{what} {source!r} is not a URI-reference (RFC 3986): no spaces, line breaks or "
            "non-ASCII characters (percent-encode them, such as %20)"
        )
    scheme, colon, _ = re.split(r"[/?#]", source, maxsplit=1)[0].partition(":")
    if colon and not _SCHEME.fullmatch(scheme):
        raise BadInput(
            f"{what} {source!r} is not a URI-reference (RFC 3986): a colon before the first "
            f"slash ends a scheme, and {scheme!r} is none (write ./{source} for a path)"
        )
    return source


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
