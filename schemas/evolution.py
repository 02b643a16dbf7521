"""The schema evolution guard: every current schema stays fully compatible with every
released version of its event (old events readable with the new schema, new events
readable with the old one)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from schemas.base import EVENT_TYPES
from schemas.compat import full_compatibility
from schemas.registry import SchemaRegistry


@dataclass
class Report:
    """What `ecom schemas check` found."""

    problems: list[str] = field(default_factory=list)
    unreleased: list[str] = field(default_factory=list)
    checked: int = 0


def check(registry: SchemaRegistry) -> Report:
    """Compare each current schema with every released version of its event."""
    report = Report()
    for event_type in sorted(set(EVENT_TYPES) - set(registry.current)):
        report.problems.append(f"{event_type}: a model without a schema file")
    for event_type in sorted(set(registry.released) - set(registry.current)):
        report.problems.append(
            f"{event_type}: released, but its schema is gone; old events would be unreadable"
        )
    for event_type, current in sorted(registry.current.items()):
        released = registry.released.get(event_type, [])
        for version in released:
            report.checked += 1
            for problem in full_compatibility(current.raw, version.raw):
                report.problems.append(f"{event_type} (current vs v{version.version}): {problem}")
        if not released or _essence(released[-1].raw) != _essence(current.raw):
            report.unreleased.append(event_type)
    return report


def unlike_models(registry: SchemaRegistry) -> list[str]:
    """The current schemas whose fields, nested records' too, are not their models'
    (the code writes what a model holds): compatible as schemas, they were released and
    then could not be written (a field the model lacks)."""
    problems = []
    for event_type, current in sorted(registry.current.items()):
        model = EVENT_TYPES.get(event_type)
        if model is not None:
            problems += _unlike(event_type, current.raw, model)
    return problems


def _unlike(where: str, record: dict[str, Any], model: type[BaseModel]) -> list[str]:
    declared = {f["name"]: f["type"] for f in record.get("fields", [])}
    written = model.model_fields
    if set(declared) != set(written):
        return [
            f"{where}: the schema's fields {sorted(declared)} are not the model's "
            f"{sorted(written)} ({model.__module__.replace('.', '/')}.py): change both together"
        ]
    problems = []
    for name, avro_type in declared.items():
        records, models = list(_records(avro_type)), list(_models(written[name].annotation))
        if len(records) == 1 and len(models) == 1:
            problems += _unlike(f"{where}.{name}", records[0], models[0])
    return problems


def _records(avro_type: Any) -> Iterator[dict[str, Any]]:
    """The records a field's type holds: itself, or in a union, an array or a map."""
    if isinstance(avro_type, list):
        for branch in avro_type:
            yield from _records(branch)
    elif isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "record":
            yield avro_type
        elif kind in ("array", "map"):
            yield from _records(avro_type["items" if kind == "array" else "values"])


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models a field's annotation holds: itself, or inside Optional, tuple, ..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in get_args(annotation):
        yield from _models(argument)


def release(registry: SchemaRegistry, released_dir: Path) -> list[Path]:
    """Freeze every new or changed current schema as its next released version."""
    written = []
    for event_type in check(registry).unreleased:
        current = registry.current[event_type]
        versions = registry.released.get(event_type, [])
        number = (versions[-1].version or 0) + 1 if versions else 1
        target = released_dir / current.domain / f"{event_type}.v{number}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(current.path, target)
        written.append(target)
    return written


def _essence(schema: Any) -> str:
    """Return the schema without its docs, to tell a real change from a reworded one."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "doc"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(schema), sort_keys=True)
