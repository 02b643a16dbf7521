"""The evolution guard (`ecom schemas check`) on the real schemas and a broken copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from schemas.evolution import check, release, unlike_models
from schemas.registry import CURRENT_DIR, RELEASED_DIR, SchemaRegistry
from tests.support import run_cli


def _copies(tmp_path: Path) -> tuple[Path, Path]:
    current, released = tmp_path / "avro", tmp_path / "released"
    shutil.copytree(CURRENT_DIR, current)
    shutil.copytree(RELEASED_DIR, released)
    return current, released


def _edit(path: Path, change: dict[str, object]) -> None:
    schema = json.loads(path.read_text())
    schema["fields"].append(change)
    path.write_text(json.dumps(schema))


def test_the_shipped_schemas_pass_and_are_all_released() -> None:
    report = check(SchemaRegistry.load())
    assert report.problems == []
    assert report.unreleased == []
    assert report.checked >= len(SchemaRegistry.load().current)


def test_a_breaking_change_is_rejected(tmp_path: Path) -> None:
    current, released = _copies(tmp_path)
    _edit(current / "order" / "OrderCreated.avsc", {"name": "coupon", "type": "string"})
    report = check(SchemaRegistry.load(current, released))
    assert report.problems == [
        "OrderCreated (current vs v1): new schema cannot read old events: "
        "coupon: not in the events written, and no default"
    ]
    result = run_cli("schemas", "check", "--current", str(current), "--released", str(released))
    assert result.returncode == 2
    assert "BREAKING  OrderCreated (current vs v1)" in result.stdout
    assert result.stderr.startswith("error: 1 incompatible schema change(s)")


def test_a_compatible_change_is_released_as_the_next_version(tmp_path: Path) -> None:
    current, released = _copies(tmp_path)
    _edit(
        current / "order" / "OrderCreated.avsc", {"name": "coupon", "type": "string", "default": ""}
    )
    registry = SchemaRegistry.load(current, released)
    report = check(registry)
    assert (report.problems, report.unreleased) == ([], ["OrderCreated"])
    assert release(registry, released) == [released / "order" / "OrderCreated.v2.avsc"]
    assert check(SchemaRegistry.load(current, released)).unreleased == []


def test_a_removed_event_type_is_rejected(tmp_path: Path) -> None:
    current, released = _copies(tmp_path)
    (current / "order" / "OrderExpired.avsc").unlink()
    problems = check(SchemaRegistry.load(current, released)).problems
    assert any("OrderExpired: released, but its schema is gone" in p for p in problems)


@pytest.mark.parametrize("text", ["{bad json", '{"type": "no_such_type"}', "[1, 2]"])
def test_a_file_that_is_no_avro_schema_is_one_line(tmp_path: Path, text: str) -> None:
    current, released = _copies(tmp_path)
    (current / "order" / "OrderCreated.avsc").write_text(text)
    result = run_cli("schemas", "check", "--current", str(current), "--released", str(released))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "OrderCreated.avsc is not an Avro schema" in result.stderr


def test_a_schema_its_model_cannot_write_is_refused(tmp_path: Path) -> None:
    """A compatible field the model lacks passed check and release; every `ecom produce`
    of the event then failed with a traceback."""
    current, released = _copies(tmp_path)
    optional: dict[str, object] = {"name": "tier", "type": ["null", "string"], "default": None}
    _edit(current / "user" / "UserCreated.avsc", optional)
    assert check(SchemaRegistry.load(current, released)).problems == [], "compatible as schemas"
    result = run_cli("schemas", "check", "--current", str(current), "--released", str(released))
    assert result.returncode == 2
    assert "UNWRITABLE  UserCreated: the schema's fields [" in result.stdout
    assert "'tier'" in result.stdout.partition("are not the model's")[0]
    assert result.stderr == (
        "error: 1 schema(s) unlike their models: the code could not write them\n"
    )
    assert run_cli("schemas", "check").returncode == 0, "the shipped ones match"


def test_a_nested_record_its_model_cannot_write_is_refused(tmp_path: Path) -> None:
    current, released = _copies(tmp_path)
    path = current / "order" / "OrderCreated.avsc"
    schema = json.loads(path.read_text())
    lines = next(f for f in schema["fields"] if f["name"] == "lines")
    lines["type"]["items"]["fields"].append({"name": "gift", "type": "boolean", "default": False})
    path.write_text(json.dumps(schema))
    problems = unlike_models(SchemaRegistry.load(current, released))
    assert len(problems) == 1
    assert problems[0].startswith("OrderCreated.lines: the schema's fields [")
    assert unlike_models(SchemaRegistry.load()) == [], "the shipped ones match, nested too"
