"""A compiled Avro binary writer for our event schemas.

fastavro spends most of a small record's encoding time setting up each call, so the
producer encodes through writers compiled once per schema: one small function per
field, reading the model's attributes directly. Only the types our contracts use are
compiled (primitives, timestamp-micros, records, arrays, maps, ["null", T] unions);
`compile_writer` raises NotCompilable for anything else and the codec falls back to
fastavro. Tests check every event byte for byte against fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from schemas.errors import NotCompilable

Write = Callable[[bytearray, Any], None]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def write_long(buffer: bytearray, value: int) -> None:
    """Append a zig-zag varint (Avro int and long)."""
    if 0 <= value < 64:  # most lengths and quantities: one byte
        buffer.append(value << 1)
        return
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        buffer.append((n & 0x7F) | 0x80)
        n >>= 7
    buffer.append(n)


def _write_string(buffer: bytearray, value: str) -> None:
    data = value.encode()
    write_long(buffer, len(data))
    buffer += data


def _write_bytes(buffer: bytearray, value: bytes) -> None:
    write_long(buffer, len(value))
    buffer += value


def _write_boolean(buffer: bytearray, value: bool) -> None:
    buffer.append(1 if value else 0)


def _write_null(buffer: bytearray, value: None) -> None:
    """Nulls take no bytes."""


def _write_float(buffer: bytearray, value: float) -> None:
    buffer += struct.pack("<f", value)


def _write_double(buffer: bytearray, value: float) -> None:
    buffer += struct.pack("<d", value)


def _write_timestamp_micros(buffer: bytearray, value: datetime) -> None:
    delta = value - EPOCH
    write_long(buffer, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


_PRIMITIVE_WRITERS: dict[str, Write] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": write_long,
    "long": write_long,
    "float": _write_float,
    "double": _write_double,
    "bytes": _write_bytes,
    "string": _write_string,
}


def compile_writer(schema: Any, names: dict[str, Write] | None = None) -> Write:
    """Return a function appending the Avro binary encoding of a value of `schema`."""
    names = {} if names is None else names
    if isinstance(schema, str):
        if schema in _PRIMITIVE_WRITERS:
            return _PRIMITIVE_WRITERS[schema]
        if schema in names:
            return names[schema]
        short = schema.rsplit(".", 1)[-1]
        if short in names:
            return names[short]
        raise NotCompilable(f"unknown named type {schema}")
    if isinstance(schema, list):
        return _union(schema, names)
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-micros" and kind == "long":
        return _write_timestamp_micros
    if schema.get("logicalType"):
        raise NotCompilable(f"logical type {schema['logicalType']}")
    if kind == "record":
        return _record(schema, names)
    if kind == "array":
        return _array(compile_writer(schema["items"], names))
    if kind == "map":
        return _map(compile_writer(schema["values"], names))
    if isinstance(kind, (str, list, dict)) and kind not in ("enum", "fixed", "error"):
        return compile_writer(kind, names)
    raise NotCompilable(f"type {kind}")


def _record(schema: dict[str, Any], names: dict[str, Write]) -> Write:
    fields: list[tuple[str, Write]] = []

    def write_record(buffer: bytearray, value: Any) -> None:
        for name, write in fields:
            write(buffer, getattr(value, name))

    names[schema["name"]] = write_record  # before the fields: a record may refer to itself
    namespace = schema.get("namespace")
    if namespace:
        names[f"{namespace}.{schema['name']}"] = write_record
    fields.extend((f["name"], compile_writer(f["type"], names)) for f in schema["fields"])
    return write_record


def _array(write_item: Write) -> Write:
    def write_array(buffer: bytearray, values: Any) -> None:
        if values:
            write_long(buffer, len(values))
            for item in values:
                write_item(buffer, item)
        buffer.append(0)

    return write_array


def _map(write_value: Write) -> Write:
    def write_map(buffer: bytearray, values: dict[str, Any]) -> None:
        if values:
            write_long(buffer, len(values))
            for key, item in values.items():
                _write_string(buffer, key)
                write_value(buffer, item)
        buffer.append(0)

    return write_map


def _union(branches: list[Any], names: dict[str, Write]) -> Write:
    if len(branches) != 2 or branches[0] != "null":
        raise NotCompilable("only [null, T] unions are compiled")
    write_value = compile_writer(branches[1], names)

    def write_optional(buffer: bytearray, value: Any) -> None:
        if value is None:
            buffer.append(0)
        else:
            buffer.append(2)  # zig-zag of branch index 1
            write_value(buffer, value)

    return write_optional
