"""Avro resolution rules as the evolution guard applies them."""

from __future__ import annotations

import copy
from typing import Any

from schemas.compat import full_compatibility, read_problems

BASE: dict[str, Any] = {
    "type": "record", "name": "Thing", "namespace": "t",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}  # fmt: skip


def _changed(**fields: Any) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    for name, field in fields.items():
        existing = [f for f in schema["fields"] if f["name"] == name]
        if field is None:
            schema["fields"] = [f for f in schema["fields"] if f["name"] != name]
        elif existing:
            existing[0].update(field)
        else:
            schema["fields"].append({"name": name, **field})
    return schema


def test_identical_schemas_are_compatible() -> None:
    assert full_compatibility(BASE, copy.deepcopy(BASE)) == []


def test_adding_a_field_with_a_default_is_fully_compatible() -> None:
    assert full_compatibility(_changed(colour={"type": "string", "default": ""}), BASE) == []


def test_adding_a_field_without_default_breaks_reading_old_events() -> None:
    problems = full_compatibility(_changed(colour={"type": "string"}), BASE)
    assert problems == [
        "new schema cannot read old events: colour: not in the events written, and no default"
    ]


def test_removing_a_field_without_default_breaks_old_readers() -> None:
    problems = full_compatibility(_changed(count=None), BASE)
    assert problems == [
        "old schema cannot read new events: count: not in the events written, and no default"
    ]


def test_removing_an_optional_field_with_default_is_fine() -> None:
    assert full_compatibility(_changed(note=None), BASE) == []


def test_promotion_works_one_way_only() -> None:
    wider = _changed(count={"type": "long"})
    assert read_problems(wider, BASE) == []
    assert read_problems(BASE, wider) == ["count: type changed from long to int"]


def test_new_enum_symbol_breaks_old_readers_without_enum_default() -> None:
    more = copy.deepcopy(BASE)
    more["fields"][2]["type"]["symbols"] = ["A", "B", "C"]
    assert read_problems(more, BASE) == []
    assert read_problems(BASE, more) == ["kind: enum symbols ['C'] unknown to the reader"]


def test_changed_logical_type_is_reported() -> None:
    millis = _changed(at={"type": {"type": "long", "logicalType": "timestamp-millis"}})
    assert "at: logical type changed from timestamp-micros to timestamp-millis" in (
        read_problems(millis, BASE)
    )


def test_union_branch_removed_breaks_reading() -> None:
    narrower = _changed(note={"type": "string", "default": ""})
    assert read_problems(narrower, BASE) == ["note: writer type null has no match"]
    assert read_problems(BASE, narrower) == []


def test_renamed_record_breaks_unless_aliased() -> None:
    renamed = copy.deepcopy(BASE) | {"name": "Other"}
    assert read_problems(renamed, BASE) == ["record: record Thing renamed to Other"]
    assert read_problems(renamed | {"aliases": ["Thing"]}, BASE) == []


def test_named_type_references_are_followed() -> None:
    schema: dict[str, Any] = {
        "type": "record", "name": "Pair", "namespace": "t",
        "fields": [
            {"name": "a", "type": {"type": "record", "name": "Money",
                                   "fields": [{"name": "minor", "type": "long"}]}},
            {"name": "b", "type": "Money"},
        ],
    }  # fmt: skip
    broken = copy.deepcopy(schema)
    broken["fields"][0]["type"]["fields"][0]["type"] = "string"
    assert full_compatibility(schema, copy.deepcopy(schema)) == []
    problems = read_problems(broken, schema)
    assert "a.minor: type changed from long to string" in problems
    assert "b.minor: type changed from long to string" in problems
