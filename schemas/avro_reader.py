"""A compiled Avro binary reader for our event schemas: the twin of schemas.avro_writer.

fastavro's schemaless reader walks the schema on every call; a reader compiled once per
schema reads the fields in order with the shapes already known (one-byte lengths and
small ints read inline, nested records flattened into one function). It only reads a
body written with the same schema: a body of an older writer schema, which has to be
resolved into the current one, still goes through fastavro. The same types as the
writer are compiled (primitives, timestamp-micros, records, arrays, maps, ["null", T]
unions); anything else raises NotCompilable and fastavro reads it. Tests check every
event's record equal to fastavro's, and corrupt bodies refused by both.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from schemas.avro_writer import EPOCH, PRIMITIVES, Lines, define, enter_record, label, named_type
from schemas.errors import NotCompilable

Read = Callable[[bytes, int], tuple[Any, int]]  # (data, position) -> (value, next position)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Return a zig-zag varint (Avro int and long) at pos, and the position after it."""
    byte = data[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than ten bytes")
    return (n >> 1) ^ -(n & 1), pos


def compile_reader(schema: Any) -> Read:
    """Return a function reading the Avro binary encoding of a value of `schema`."""
    source = _Source()
    result = source.value(schema, 1, {}, ())
    body = "\n".join(source.lines)
    code = f"def read(data, pos):\n{body}\n    return {result}, pos\n"
    read: Read = define(code, f"avro reader {label(schema)}", _RUNTIME)
    return read


_RUNTIME: dict[str, Any] = {
    "read_long": read_long,
    "EPOCH": EPOCH,
    "_micros": lambda micros: timedelta(0, 0, micros),
    "_float": struct.Struct("<f").unpack_from,
    "_double": struct.Struct("<d").unpack_from,
}


class _Source(Lines):
    """The reader's lines."""

    def value(self, schema: Any, indent: int, names: dict[str, Any],
              inside: tuple[str, ...]) -> str:  # fmt: skip
        """Emit the lines that read a value of `schema` at `pos`; return the expression
        (a variable or a constant) holding it."""
        if isinstance(schema, str):
            return self._named(schema, indent, names, inside)
        if isinstance(schema, list):
            return self._union(schema, indent, names, inside)
        if schema.get("logicalType") == "timestamp-micros" and schema["type"] == "long":
            micros = self._long(indent)
            moment = self.name("moment")
            self.emit(indent, f"{moment} = EPOCH + _micros({micros})")
            return moment
        if schema.get("logicalType"):
            raise NotCompilable(f"logical type {schema['logicalType']}")
        if schema["type"] == "record":
            return self._record(schema, indent, names, inside)
        if schema["type"] == "array":
            return self._blocks(schema["items"], None, indent, names, inside)
        if schema["type"] == "map":
            return self._blocks(schema["values"], "string", indent, names, inside)
        if isinstance(schema["type"], (str, list, dict)) and schema["type"] not in (
            "enum", "fixed", "error",
        ):  # fmt: skip
            return self.value(schema["type"], indent, names, inside)
        raise NotCompilable(f"type {schema['type']}")

    def _named(self, schema: str, indent: int, names: dict[str, Any],
               inside: tuple[str, ...]) -> str:  # fmt: skip
        if schema in PRIMITIVES:
            return self._primitive(schema, indent)
        return self.value(named_type(schema, names), indent, names, inside)

    def _primitive(self, kind: str, indent: int) -> str:
        if kind == "null":
            return "None"  # nulls take no bytes
        if kind in ("int", "long"):
            return self._long(indent)
        value = self.name("value")
        if kind == "boolean":
            self.emit(indent, f"{value} = data[pos]")
            self.emit(indent, f"if {value} > 1:")
            self.emit(indent + 1, "raise ValueError('a boolean byte other than 0 or 1')")
            self.emit(indent, f"{value} = {value} == 1")
            self.emit(indent, "pos += 1")
        elif kind in ("float", "double"):
            self.emit(indent, f"{value} = _{kind}(data, pos)[0]")
            self.emit(indent, f"pos += {4 if kind == 'float' else 8}")
        else:
            size, end = self._long(indent), self.name("end")
            self.emit(indent, f"{end} = pos + {size}")
            self.emit(indent, f"if {size} < 0 or {end} > len(data):")
            self.emit(indent + 1, "raise EOFError('a length past the end of the body')")
            decode = ".decode()" if kind == "string" else ""
            self.emit(indent, f"{value} = data[pos:{end}]{decode}")
            self.emit(indent, f"pos = {end}")
        return value

    def _long(self, indent: int) -> str:
        number = self.name("number")
        self.emit(indent, f"{number} = data[pos]")
        self.emit(indent, f"if {number} < 0x80:")  # most lengths and quantities: one byte
        self.emit(indent + 1, f"{number} = ({number} >> 1) ^ -({number} & 1)")
        self.emit(indent + 1, "pos += 1")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{number}, pos = read_long(data, pos)")
        return number

    def _record(self, schema: dict[str, Any], indent: int, names: dict[str, Any],
                inside: tuple[str, ...]) -> str:  # fmt: skip
        inside = enter_record(schema, names, inside)
        fields = [
            (field["name"], self.value(field["type"], indent, names, inside))
            for field in schema["fields"]
        ]
        record = self.name("record")
        items = ", ".join(f"{field!r}: {value}" for field, value in fields)
        self.emit(indent, f"{record} = {{{items}}}")
        return record

    def _blocks(self, items: Any, keys: str | None, indent: int, names: dict[str, Any],
                inside: tuple[str, ...]) -> str:  # fmt: skip
        """An array (keys None) or a map: blocks of items, each led by its count, ended
        by a zero count; a negative count is followed by the block's size in bytes. Every
        item takes a byte at least, so a count past the body's end is refused at once (an
        array of items that take none is left to fastavro)."""
        if keys is None and _may_take_no_bytes(items, names):
            raise NotCompilable("an array of items that may take no bytes")
        result = self.name("map" if keys else "array")
        self.emit(indent, f"{result} = {{}}" if keys else f"{result} = []")
        self.emit(indent, "while True:")
        count = self._long(indent + 1)
        self.emit(indent + 1, f"if {count} == 0:")
        self.emit(indent + 2, "break")
        self.emit(indent + 1, f"if {count} < 0:")
        self.emit(indent + 2, f"{count} = -{count}")
        self.emit(indent + 2, "pos = read_long(data, pos)[1]")
        self.emit(indent + 1, f"if {count} > len(data) - pos:")
        self.emit(indent + 2, "raise EOFError('a block count past the end of the body')")
        self.emit(indent + 1, f"for _ in range({count}):")
        key = self._primitive(keys, indent + 2) if keys else None
        item = self.value(items, indent + 2, names, inside)
        self.emit(indent + 2, f"{result}[{key}] = {item}" if key else f"{result}.append({item})")
        return result

    def _union(self, branches: list[Any], indent: int, names: dict[str, Any],
               inside: tuple[str, ...]) -> str:  # fmt: skip
        if len(branches) != 2 or branches[0] != "null":
            raise NotCompilable("only [null, T] unions are compiled")
        branch, value = self.name("branch"), self.name("value")
        self.emit(indent, f"{branch} = data[pos]")
        self.emit(indent, "pos += 1")
        self.emit(indent, f"if {branch} == 0:")
        self.emit(indent + 1, f"{value} = None")
        self.emit(indent, f"elif {branch} == 2:")  # zig-zag of branch index 1
        present = self.value(branches[1], indent + 1, names, inside)
        self.emit(indent + 1, f"{value} = {present}")
        self.emit(indent, "else:")
        self.emit(indent + 1, "raise ValueError('a union branch the schema does not have')")
        return value


def _may_take_no_bytes(schema: Any, names: dict[str, Any]) -> bool:
    """Tell whether a value of `schema` can be encoded in no bytes (null, or a record of
    such fields): a block count cannot be checked against the bytes left for those."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema == "null"
        return _may_take_no_bytes(named_type(schema, names), names)
    if isinstance(schema, list):
        return False  # a union's branch index takes a byte
    if schema["type"] == "record":
        return all(_may_take_no_bytes(field["type"], names) for field in schema["fields"])
    if isinstance(schema["type"], (dict, list)) or schema["type"] == "null":
        return _may_take_no_bytes(schema["type"], names)
    return False  # other primitives, arrays and maps (their end marker) take a byte
