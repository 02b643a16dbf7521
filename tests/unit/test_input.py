"""User input to events: clear errors naming the spot, and nothing half-read."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from ecom.errors import BadInput, InvalidEvent
from producers.input import build_event, parse_data_option, read_ndjson
from tests.samples import SAMPLES


def _ndjson(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _line(event_type: str, **changes: object) -> str:
    return json.dumps({"type": event_type, **SAMPLES[event_type], **changes}, default=str)


def test_build_event_names_the_field_and_problem() -> None:
    data = SAMPLES["OrderCreated"] | {"lines": [{"product_id": "p-1", "quantity": -3}]}
    with pytest.raises(
        InvalidEvent, match=r"^OrderCreated: lines\.0\.quantity: Input should be greater than 0"
    ):
        build_event("OrderCreated", data)


def test_unknown_type_lists_known_ones() -> None:
    with pytest.raises(
        BadInput, match="unknown event type 'OrderPlaced'; known types: OrderCancel"
    ):
        build_event("OrderPlaced", {})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"user_id": "u", "email": "a@b.de", "name": "A"}, "country: Field required"),
        ({"user_id": 7, "email": "a@b.de", "name": "A", "country": "DE"},
         "user_id: Input should be a valid string"),
        ({**SAMPLES["UserCreated"], "extra": 1}, "extra: Extra inputs are not permitted"),
        ([1, 2], "expected a JSON object, got list"),
    ],
)  # fmt: skip
def test_contract_violations_are_one_line(data: object, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        build_event("UserCreated", data)


def test_data_option_reads_inline_json_and_files(tmp_path: Path) -> None:
    assert parse_data_option('{"a": 1}') == {"a": 1}
    path = tmp_path / "e.json"
    path.write_text('{"b": 2}')
    assert parse_data_option(f"@{path}") == {"b": 2}
    with pytest.raises(BadInput, match="invalid JSON in --data"):
        parse_data_option('{"a": ')
    with pytest.raises(BadInput, match="cannot read"):
        parse_data_option(f"@{tmp_path / 'missing.json'}")
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(BadInput, match=r"^--data .*e.json is not UTF-8 text \(byte 0: "):
        parse_data_option(f"@{path}")


def test_ndjson_reads_every_line_into_events(tmp_path: Path) -> None:
    path = _ndjson(tmp_path / "ok.ndjson", [_line("UserCreated"), "", _line("OrderCreated")])
    assert [e.event_type for e in read_ndjson(path)] == ["UserCreated", "OrderCreated"]


def test_one_bad_line_among_ten_thousand_is_named_with_file_and_line(tmp_path: Path) -> None:
    lines = [_line("UserCreated", user_id=f"u-{i}") for i in range(10_000)]
    lines[6789] = _line("UserCreated", user_id="u-x", currency="EUR")
    path = _ndjson(tmp_path / "big.ndjson", lines)
    with pytest.raises(BadInput) as raised:
        read_ndjson(path)
    assert str(raised.value) == (
        f"{path}:6790: UserCreated: currency: Extra inputs are not permitted; nothing was sent"
    )


def test_several_bad_lines_are_counted(tmp_path: Path) -> None:
    path = _ndjson(tmp_path / "bad.ndjson", ["{oops", '{"no": "type"}', _line("UserCreated")])
    with pytest.raises(
        BadInput, match=r"bad\.ndjson:1: invalid JSON: .* \(and 1 more bad line\(s\)\)"
    ):
        read_ndjson(path)


def test_an_empty_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="holds no events"):
        read_ndjson(_ndjson(tmp_path / "empty.ndjson", [""]))


def test_ndjson_that_is_not_utf8_names_the_line_in_a_file_or_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = (_line("UserCreated") + "\n").encode() + b"\xff\xfe\n"
    path = tmp_path / "bad.ndjson"
    path.write_bytes(content)
    with pytest.raises(BadInput) as raised:
        read_ndjson(str(path))
    assert str(raised.value) == (
        f"{path}:2: not UTF-8 text (byte 0: invalid start byte); nothing was sent"
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(content)))
    with pytest.raises(BadInput, match=r"^<stdin>:2: not UTF-8 text \(byte 0: "):
        read_ndjson("-")
