"""A compiled Avro binary writer for our event schemas.

fastavro spends most of a small record's encoding time setting up each call, so the
producer encodes through writers compiled once per schema: Python source generated from
the schema (every field read by attribute, one-byte lengths and small ints written
inline, nested records flattened into one function) and compiled with exec. Only the
types our contracts use are compiled (primitives, timestamp-micros, records, arrays,
maps, ["null", T] unions); `compile_writer` raises NotCompilable for anything else
(and for a record that contains itself) and the codec falls back to fastavro. Tests
check every event byte for byte against fastavro.
"""

from __future__ import annotations

import keyword
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


def compile_writer(schema: Any) -> Write:
    """Return a function appending the Avro binary encoding of a value of `schema`."""
    source = _Source()
    source.value(schema, "value", 1, {}, ())
    code = "def write(buffer, value):\n    _append = buffer.append\n" + "\n".join(source.lines)
    write: Write = define(code, f"avro writer {label(schema)}", _RUNTIME)
    return write


def define(code: str, what: str, runtime: dict[str, Any]) -> Any:
    """Compile generated source that defines one function, and return the function."""
    scope = dict(runtime)
    try:
        exec(compile(code, f"<{what}>", "exec"), scope)  # noqa: S102 - our own source
    except SyntaxError as error:  # a shape the generator did not foresee: fastavro does it
        raise NotCompilable(f"generated {what} does not compile: {error}") from error
    defined = [value for key, value in scope.items() if key not in runtime and key[:2] != "__"]
    return defined[0]


_SHORT = "short name:"  # names[_SHORT + name]: the one record of that short name
_AMBIGUOUS: dict[str, Any] = {}  # ... or this, when two namespaces use it

_RUNTIME: dict[str, Any] = {
    "write_long": write_long,
    "EPOCH": EPOCH,
    "_pack_float": struct.Struct("<f").pack,
    "_pack_double": struct.Struct("<d").pack,
}


def label(schema: Any) -> str:
    return str(schema.get("name", "schema")) if isinstance(schema, dict) else str(schema)


class Lines:
    """Lines of a generated function's body, and fresh variable names for them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def enter_record(schema: dict[str, Any], names: dict[str, Any], inside: tuple[str, ...]
                 ) -> tuple[str, ...]:  # fmt: skip
    """Note a record's names for later references to it; return `inside` with it. A
    record that contains itself, or a field name that is no identifier, cannot compile."""
    name = schema["name"]
    if name in inside:
        raise NotCompilable(f"record {name} contains itself")
    names[f"{schema['namespace']}.{name}" if schema.get("namespace") else name] = schema
    short = _SHORT + name.rsplit(".", 1)[-1]
    names[short] = schema if names.get(short, schema) is schema else _AMBIGUOUS
    for field in schema["fields"]:
        if not field["name"].isidentifier() or keyword.iskeyword(field["name"]):
            raise NotCompilable(f"field name {field['name']!r}")
    return (*inside, name)


def named_type(schema: str, names: dict[str, Any]) -> Any:
    """Return the record a name refers to."""
    found = names.get(schema) or names.get(_SHORT + schema.rsplit(".", 1)[-1])
    if found is None or found is _AMBIGUOUS:
        raise NotCompilable(f"unknown or ambiguous named type {schema}")
    return found


class _Source(Lines):
    """The writer's lines."""

    def value(self, schema: Any, var: str, indent: int, names: dict[str, Any],
              inside: tuple[str, ...]) -> None:  # fmt: skip
        """Emit the lines that append the encoding of `var`, a value of `schema`."""
        if isinstance(schema, str):
            self._named(schema, var, indent, names, inside)
        elif isinstance(schema, list):
            self._union(schema, var, indent, names, inside)
        elif schema.get("logicalType") == "timestamp-micros" and schema["type"] == "long":
            delta = self.name("delta")
            self.emit(indent, f"{delta} = {var} - EPOCH")
            self.emit(indent, f"write_long(buffer, ({delta}.days * 86400 + {delta}.seconds) "
                              f"* 1000000 + {delta}.microseconds)")  # fmt: skip
        elif schema.get("logicalType"):
            raise NotCompilable(f"logical type {schema['logicalType']}")
        elif schema["type"] == "record":
            self._record(schema, var, indent, names, inside)
        elif schema["type"] == "array":
            self._array(schema["items"], var, indent, names, inside)
        elif schema["type"] == "map":
            self._map(schema["values"], var, indent, names, inside)
        elif isinstance(schema["type"], (str, list, dict)) and schema["type"] not in (
            "enum", "fixed", "error",
        ):  # fmt: skip
            self.value(schema["type"], var, indent, names, inside)
        else:
            raise NotCompilable(f"type {schema['type']}")

    def _named(self, schema: str, var: str, indent: int, names: dict[str, Any],
               inside: tuple[str, ...]) -> None:  # fmt: skip
        if schema in PRIMITIVES:
            self._primitive(schema, var, indent)
            return
        self.value(named_type(schema, names), var, indent, names, inside)

    def _primitive(self, kind: str, var: str, indent: int) -> None:
        if kind == "null":
            return  # nulls take no bytes
        if kind == "boolean":
            self.emit(indent, f"_append(1 if {var} else 0)")
        elif kind in ("int", "long"):
            self._long(var, indent)
        elif kind in ("float", "double"):
            self.emit(indent, f"buffer += _pack_{kind}({var})")
        else:
            data = var
            if kind == "string":
                data = self.name("data")
                self.emit(indent, f"{data} = {var}.encode()")
            self._long(f"len({data})", indent)
            self.emit(indent, f"buffer += {data}")

    def _long(self, expression: str, indent: int) -> None:
        number = self.name("number")
        self.emit(indent, f"{number} = {expression}")
        self.emit(indent, f"if 0 <= {number} < 64:")  # most lengths and quantities: one byte
        self.emit(indent + 1, f"_append({number} << 1)")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"write_long(buffer, {number})")

    def _record(self, schema: dict[str, Any], var: str, indent: int, names: dict[str, Any],
                inside: tuple[str, ...]) -> None:  # fmt: skip
        inside = enter_record(schema, names, inside)
        for field in schema["fields"]:
            value = self.name("field")
            self.emit(indent, f"{value} = {var}.{field['name']}")
            self.value(field["type"], value, indent, names, inside)

    def _array(self, items: Any, var: str, indent: int, names: dict[str, Any],
               inside: tuple[str, ...]) -> None:  # fmt: skip
        item = self.name("item")
        self.emit(indent, f"if {var}:")
        self._long(f"len({var})", indent + 1)
        self.emit(indent + 1, f"for {item} in {var}:")
        self.emit(indent + 2, "pass")  # the items may take no bytes (null, empty records)
        self.value(items, item, indent + 2, names, inside)
        self.emit(indent, "_append(0)")

    def _map(self, values: Any, var: str, indent: int, names: dict[str, Any],
             inside: tuple[str, ...]) -> None:  # fmt: skip
        key, item = self.name("key"), self.name("item")
        self.emit(indent, f"if {var}:")
        self._long(f"len({var})", indent + 1)
        self.emit(indent + 1, f"for {key}, {item} in {var}.items():")
        self._primitive("string", key, indent + 2)
        self.value(values, item, indent + 2, names, inside)
        self.emit(indent, "_append(0)")

    def _union(self, branches: list[Any], var: str, indent: int, names: dict[str, Any],
               inside: tuple[str, ...]) -> None:  # fmt: skip
        if len(branches) != 2 or branches[0] != "null":
            raise NotCompilable("only [null, T] unions are compiled")
        self.emit(indent, f"if {var} is None:")
        self.emit(indent + 1, "_append(0)")
        self.emit(indent, "else:")
        self.emit(indent + 1, "_append(2)")  # zig-zag of branch index 1
        self.value(branches[1], var, indent + 1, names, inside)
