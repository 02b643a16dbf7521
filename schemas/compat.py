"""Avro schema resolution rules: can data written with one schema be read with another?

Follows the specification's resolution rules (records by field name with defaults,
numeric promotion, unions branch by branch, enums by symbol), and is stricter in one
way: a changed logical type (millis vs micros, say) is reported, because the bytes
would still read and silently mean something else.
"""

from __future__ import annotations

from typing import Any

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
Names = dict[str, dict[str, Any]]


def full_compatibility(new: Any, old: Any) -> list[str]:
    """Return why new and old cannot each read what the other wrote (empty: fine)."""
    backward = [f"new schema cannot read old events: {p}" for p in read_problems(new, old)]
    forward = [f"old schema cannot read new events: {p}" for p in read_problems(old, new)]
    return backward + forward


def read_problems(reader: Any, writer: Any) -> list[str]:
    """Return why data written with writer cannot be read with reader (empty: it can)."""
    reader_names: Names = {}
    writer_names: Names = {}
    _collect(reader, "", reader_names)
    _collect(writer, "", writer_names)
    problems: list[str] = []
    _compare(_Side(reader, "", reader_names), _Side(writer, "", writer_names), "", problems)
    return problems


class _Side:
    """A schema node plus the namespace and named types it is read in."""

    def __init__(self, schema: Any, namespace: str, names: Names) -> None:
        self.names = names
        self.namespace = namespace
        self.schema = self._resolve(schema)

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            full = schema if "." in schema else f"{self.namespace}.{schema}".lstrip(".")
            return self.names.get(full, self.names.get(schema, schema))
        return schema

    def child(self, schema: Any) -> _Side:
        namespace = self.namespace
        if isinstance(self.schema, dict) and "name" in self.schema:
            namespace = _namespace(self.schema, self.namespace)
        return _Side(schema, namespace, self.names)

    @property
    def kind(self) -> str:
        if isinstance(self.schema, list):
            return "union"
        if isinstance(self.schema, str):
            return self.schema
        kind = self.schema["type"]
        return kind if isinstance(kind, str) else "union"

    @property
    def logical(self) -> str | None:
        return self.schema.get("logicalType") if isinstance(self.schema, dict) else None

    def describe(self) -> str:
        if isinstance(self.schema, dict) and "name" in self.schema:
            return str(self.schema["name"])
        return self.kind + (f" ({self.logical})" if self.logical else "")


def _namespace(schema: dict[str, Any], enclosing: str) -> str:
    name = str(schema["name"])
    if "." in name:
        return name.rsplit(".", 1)[0]
    return str(schema.get("namespace", enclosing))


def _collect(schema: Any, namespace: str, names: Names) -> None:
    """Record every named type defined in schema under its full name."""
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, namespace, names)
        return
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("type"), (dict, list)):
        _collect(schema["type"], namespace, names)
        return
    if "name" in schema and schema.get("type") in ("record", "enum", "fixed", "error"):
        namespace = _namespace(schema, namespace)
        short = str(schema["name"]).rsplit(".", 1)[-1]
        names[f"{namespace}.{short}".lstrip(".")] = schema
    for field in schema.get("fields", []):
        _collect(field["type"], namespace, names)
    for key in ("items", "values"):
        if key in schema:
            _collect(schema[key], namespace, names)


def _compare(reader: _Side, writer: _Side, path: str, problems: list[str]) -> None:
    if writer.kind == "union":
        for branch in _branches(writer):
            if _first_match(reader, branch) is None:
                problems.append(f"{path or 'value'}: writer type {branch.describe()} has no match")
        return
    if reader.kind == "union":
        match = _first_match(reader, writer)
        if match is None:
            problems.append(f"{path or 'value'}: {writer.describe()} matches no reader branch")
        else:
            _compare(match, writer, path, problems)
        return
    _compare_plain(reader, writer, path, problems)


def _branches(side: _Side) -> list[_Side]:
    schema = side.schema if isinstance(side.schema, list) else side.schema["type"]
    return [side.child(branch) for branch in schema]


def _first_match(reader: _Side, writer: _Side) -> _Side | None:
    candidates = _branches(reader) if reader.kind == "union" else [reader]
    for candidate in candidates:
        if _same_kind(candidate, writer):
            return candidate
    for candidate in candidates:
        if candidate.kind in PROMOTIONS.get(writer.kind, set()):
            return candidate
    return None


def _same_kind(reader: _Side, writer: _Side) -> bool:
    if reader.kind != writer.kind:
        return False
    if reader.kind in ("record", "enum", "fixed"):
        return _short(reader) == _short(writer) or _short(writer) in reader.schema.get(
            "aliases", []
        )
    return True


def _short(side: _Side) -> str:
    return str(side.schema["name"]).rsplit(".", 1)[-1]


def _compare_plain(reader: _Side, writer: _Side, path: str, problems: list[str]) -> None:
    where = path or "value"
    if reader.kind != writer.kind and reader.kind not in PROMOTIONS.get(writer.kind, set()):
        problems.append(f"{where}: type changed from {writer.describe()} to {reader.describe()}")
        return
    if reader.logical != writer.logical:
        problems.append(f"{where}: logical type changed from {writer.logical} to {reader.logical}")
    if reader.kind in ("record", "error"):
        _compare_records(reader, writer, path, problems)
    elif reader.kind == "enum":
        _compare_enums(reader, writer, where, problems)
    elif reader.kind == "fixed" and reader.schema["size"] != writer.schema["size"]:
        problems.append(f"{where}: fixed size changed")
    elif reader.kind == "array":
        _compare(reader.child(reader.schema["items"]), writer.child(writer.schema["items"]),
                 f"{path}[]", problems)  # fmt: skip
    elif reader.kind == "map":
        _compare(reader.child(reader.schema["values"]), writer.child(writer.schema["values"]),
                 f"{path}{{}}", problems)  # fmt: skip


def _compare_records(reader: _Side, writer: _Side, path: str, problems: list[str]) -> None:
    if not _same_kind(reader, writer):
        problems.append(f"{path or 'record'}: record {_short(writer)} renamed to {_short(reader)}")
        return
    written = {f["name"]: f for f in writer.schema["fields"]}
    for field in reader.schema["fields"]:
        names = [field["name"], *field.get("aliases", [])]
        source = next((written[n] for n in names if n in written), None)
        where = f"{path}.{field['name']}".lstrip(".")
        if source is None:
            if "default" not in field:
                problems.append(f"{where}: not in the events written, and no default")
            continue
        _compare(reader.child(field["type"]), writer.child(source["type"]), where, problems)


def _compare_enums(reader: _Side, writer: _Side, where: str, problems: list[str]) -> None:
    missing = set(writer.schema["symbols"]) - set(reader.schema["symbols"])
    if missing and "default" not in reader.schema:
        problems.append(f"{where}: enum symbols {sorted(missing)} unknown to the reader")
