"""Event contracts and the codec: every event survives model -> bytes -> model."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ecom.errors import DecodeError, InvalidEvent, UnknownSchema
from ecom.topology import Topology
from schemas import (
    EVENT_TYPES,
    Codec,
    Event,
    Money,
    OrderCreated,
    OrderLine,
    PriceChanged,
    ProductCreated,
    StockAdjusted,
    UserUpdated,
    headers,
)
from schemas.avro_reader import compile_reader
from schemas.avro_writer import compile_writer
from schemas.codec import MAGIC
from schemas.errors import NotCompilable
from schemas.registry import RELEASED_DIR, default_registry
from tests.samples import SAMPLES, sample
from tests.support import REPO

CODEC = Codec()


def test_every_event_type_has_a_sample_and_a_schema() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)
    assert set(default_registry().current) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_round_trips_through_bytes(event_type: str) -> None:
    event = sample(event_type)
    assert CODEC.decode(CODEC.encode(event)) == event


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_model_fields_match_the_avro_contract(event_type: str) -> None:
    schema = default_registry().current[event_type].raw
    assert [f["name"] for f in schema["fields"]] == list(EVENT_TYPES[event_type].model_fields)
    assert schema["name"] == event_type
    assert f"ecomstream.{schema['namespace'].split('.')[-1]}.{event_type}" == (
        EVENT_TYPES[event_type].avro_name()
    )


def test_every_event_type_is_carried_by_one_topic_keyed_by_a_model_field() -> None:
    topology = Topology.load(REPO / "topics.yaml")
    assert set(topology.event_types()) == set(EVENT_TYPES)
    for event_type in EVENT_TYPES:
        key_field = topology.for_event(event_type).key_field(event_type)
        assert key_field in EVENT_TYPES[event_type].model_fields, event_type


def test_wire_format_is_avro_single_object_encoding() -> None:
    event = sample("UserCreated")
    data = CODEC.encode(event)
    raw = default_registry().current["UserCreated"].raw
    expected = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == expected


def test_an_old_version_record_decodes_with_the_current_schema() -> None:
    old = json.loads((RELEASED_DIR / "product" / "ProductCreated.v1.avsc").read_text())
    assert "description" not in {f["name"] for f in old["fields"]}
    body = io.BytesIO()
    record = {"event_id": "e-1", "occurred_at": datetime(2026, 1, 2, tzinfo=UTC),
              "product_id": "p-9", "name": "Old lamp", "category": "standard"}  # fmt: skip
    schemaless_writer(body, parse_schema(old), record)
    old_fingerprint = bytes.fromhex(fingerprint(to_parsing_canonical_form(old), "CRC-64-AVRO"))
    event = CODEC.decode(MAGIC + old_fingerprint + body.getvalue())
    assert isinstance(event, ProductCreated)
    assert (event.product_id, event.name, event.description) == ("p-9", "Old lamp", "")


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (b"not avro at all", DecodeError, "no C3 01 marker"),
        (None, DecodeError, "no C3 01 marker"),
        (MAGIC + b"\x00" * 8 + b"\x02", UnknownSchema, "unknown writer schema fingerprint"),
    ],
)
def test_undecodable_bytes_raise_named_errors(
    payload: bytes | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CODEC.decode(payload)


def test_truncated_and_padded_bodies_are_rejected() -> None:
    data = CODEC.encode(sample("OrderCreated"))
    with pytest.raises(DecodeError, match="corrupt Avro body"):
        CODEC.decode(data[:-5])
    with pytest.raises(DecodeError, match="stray bytes"):
        CODEC.decode(data + b"\x00")


def test_decoded_data_that_breaks_the_contract_is_invalid_event() -> None:
    event = sample("OrderCreated")
    schema = default_registry().current["OrderCreated"]
    body = io.BytesIO()
    record = event.model_dump() | {"currency": "XXX"}
    schemaless_writer(body, schema.parsed, record)
    with pytest.raises(InvalidEvent, match="currency"):
        CODEC.decode(MAGIC + schema.fingerprint + body.getvalue())


@pytest.mark.parametrize(
    ("event_type", "changes", "where"),
    [
        ("OrderCreated", {"lines": [{"product_id": "p-1", "quantity": 0}]}, "quantity"),
        ("OrderCreated", {"lines": []}, "lines"),
        ("OrderCreated", {"lines": [{"product_id": "p", "quantity": 1}] * 2}, "one line only"),
        ("OrderCreated", {"currency": "EUX"}, "ISO 4217"),
        ("OrderCreated", {"shipping_country": "XX"}, "ISO 3166"),
        ("StockAdjusted", {"quantity": 0}, "must not be zero"),
        ("PriceChanged", {"price": {"amount_minor": -1, "currency": "EUR"}}, "amount_minor"),
        ("UserCreated", {"email": "not-an-email"}, "email"),
        ("UserCreated", {"occurred_at": datetime(2026, 1, 1)}, "timezone"),
        ("OrderCancelled", {"reason": "bored"}, "reason"),
        ("TaxRateChanged", {"rate_bp": 10_001}, "rate_bp"),
        # Numbers are numbers: no true as 1 cent, no "1250" as 12.50, no 2.0 as two units.
        ("PriceChanged", {"price": {"amount_minor": True, "currency": "EUR"}}, "amount_minor"),
        ("PriceChanged", {"price": {"amount_minor": "1250", "currency": "EUR"}}, "amount_minor"),
        ("OrderCreated", {"lines": [{"product_id": "p-1", "quantity": 2.0}]}, "quantity"),
        ("StockAdjusted", {"quantity": "5"}, "quantity"),
        ("TaxRateChanged", {"rate_bp": True}, "rate_bp"),
    ],
)  # fmt: skip
def test_invalid_event_data_is_rejected(
    event_type: str, changes: dict[str, object], where: str
) -> None:
    with pytest.raises(ValidationError, match=where):
        sample(event_type, **changes)


def test_events_are_frozen_and_timestamps_utc() -> None:
    event = sample("UserCreated", occurred_at="2026-05-01T14:00:00+02:00")
    assert event.occurred_at == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(ValidationError, match="frozen"):
        event.event_id = "other"  # type: ignore[misc]


def test_headers_follow_the_cloudevents_kafka_binding() -> None:
    event = sample("OrderCreated")
    found = dict(headers(event, "/ecomstream/test"))
    assert found == {
        "ce_specversion": b"1.0",
        "ce_id": event.event_id.encode(),
        "ce_type": b"ecomstream.order.OrderCreated",
        "ce_source": b"/ecomstream/test",
        "ce_time": event.occurred_at.isoformat().encode(),
        "content-type": b"application/avro",
    }


# -- the compiled writer equals fastavro, byte for byte ----------------------------

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
ids = st.from_regex(r"[A-Za-z0-9._:@-]{1,64}", fullmatch=True)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
money = st.builds(
    Money, amount_minor=st.integers(0, 10**15), currency=st.sampled_from(["EUR", "JPY", "USD"])
)
orders = st.builds(
    OrderCreated,
    event_id=ids, occurred_at=moments, order_id=ids, user_id=ids,
    lines=st.lists(st.builds(OrderLine, product_id=ids, quantity=st.integers(1, 1_000_000)),
                   min_size=1, max_size=5, unique_by=lambda line: line.product_id).map(tuple),
    shipping_country=st.sampled_from(["DE", "FR", "US"]), currency=st.sampled_from(["EUR", "USD"]),
)  # fmt: skip
updates = st.builds(
    UserUpdated, event_id=ids, occurred_at=moments, user_id=ids,
    name=st.none() | text.filter(lambda s: len(s) > 0), country=st.none() | st.just("DE"),
)  # fmt: skip
adjustments = st.builds(
    StockAdjusted, event_id=ids, occurred_at=moments, product_id=ids,
    quantity=st.integers(-1_000_000, 1_000_000).filter(bool), reason=text,
)  # fmt: skip
prices = st.builds(PriceChanged, event_id=ids, occurred_at=moments, product_id=ids, price=money)


@settings(max_examples=300, deadline=None)
@given(st.one_of(orders, updates, adjustments, prices))
def test_compiled_writer_matches_fastavro(event: Event) -> None:
    schema = default_registry().current[event.event_type]
    reference = io.BytesIO()
    schemaless_writer(reference, schema.parsed, event.model_dump(), disable_tuple_notation=True)
    assert CODEC.encode(event) == MAGIC + schema.fingerprint + reference.getvalue()
    assert CODEC.decode(CODEC.encode(event)) == event


def _record(name: str, *fields: tuple[str, object], namespace: str | None = None) -> dict[str, Any]:
    columns = [{"name": n, "type": t} for n, t in fields]
    record: dict[str, Any] = {"type": "record", "name": name, "fields": columns}
    if namespace:
        record["namespace"] = namespace
    return record


@pytest.mark.parametrize(
    "schema",
    [
        _record("R", ("from", "int")),  # a Python keyword as a field name
        _record("R", ("m1", _record("M", ("x", "int"), namespace="a")),
                ("m2", _record("M", ("y", "string"), namespace="b")), ("m3", "M")),
    ],
    ids=["keyword-field", "ambiguous-short-name"],
)  # fmt: skip
def test_shapes_the_writer_cannot_compile_are_refused_for_fastavro(schema: dict[str, Any]) -> None:
    with pytest.raises(NotCompilable):
        compile_writer(schema)


def test_arrays_of_items_that_take_no_bytes_compile_like_fastavro() -> None:
    schema = _record("R", ("nothing", {"type": "array", "items": "null"}),
                     ("empty", {"type": "array", "items": _record("E")}))  # fmt: skip
    value = type("V", (), {"nothing": [None, None], "empty": [object()]})()
    written = bytearray()
    compile_writer(schema)(written, value)
    reference = io.BytesIO()
    schemaless_writer(reference, parse_schema(schema), {"nothing": [None, None], "empty": [{}]})
    assert bytes(written) == reference.getvalue()


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_sample_encodes_like_fastavro(event_type: str) -> None:
    event = sample(event_type)
    schema = default_registry().current[event_type]
    reference = io.BytesIO()
    schemaless_writer(reference, schema.parsed, event.model_dump(), disable_tuple_notation=True)
    assert CODEC.encode(event)[10:] == reference.getvalue()


# -- the compiled reader reads what fastavro reads ----------------------------------

EVERY_SHAPE = _record(
    "Shapes",
    ("flag", "boolean"), ("small", "int"), ("big", "long"), ("ratio", "float"),
    ("exact", "double"), ("raw", "bytes"), ("name", "string"), ("nothing", "null"),
    ("at", {"type": "long", "logicalType": "timestamp-micros"}),
    ("maybe", ["null", "string"]),
    ("tags", {"type": "map", "values": "long"}),
    ("lines", {"type": "array", "items": _record("Line", ("sku", "string"), ("n", "int"))}),
    ("again", {"type": "array", "items": "Line"}),
)  # fmt: skip
shapes = st.fixed_dictionaries({
    "flag": st.booleans(), "small": st.integers(-(2**31), 2**31 - 1),
    "big": st.integers(-(2**63), 2**63 - 1), "ratio": st.floats(width=32, allow_nan=False),
    "exact": st.floats(allow_nan=False), "raw": st.binary(max_size=300), "name": text,
    "nothing": st.none(), "at": moments, "maybe": st.none() | text,
    "tags": st.dictionaries(text, st.integers(-(2**63), 2**63 - 1), max_size=70),
    "lines": st.lists(st.fixed_dictionaries({"sku": text, "n": st.integers(0, 100)}), max_size=70),
    "again": st.lists(st.fixed_dictionaries({"sku": text, "n": st.integers(-5, 5)}), max_size=3),
})  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(shapes)
def test_compiled_reader_reads_every_shape_as_fastavro_does(value: dict[str, Any]) -> None:
    parsed = parse_schema(EVERY_SHAPE)
    body = io.BytesIO()
    schemaless_writer(body, parsed, value)
    data = b"head" + body.getvalue()
    record, end = compile_reader(EVERY_SHAPE)(data, 4)
    assert end == len(data)
    assert record == schemaless_reader(io.BytesIO(body.getvalue()), parsed, None)


def test_compiled_reader_reads_blocks_that_give_their_size() -> None:
    """Other writers may lead a block with a negative count and its size in bytes."""
    schema = _record("R", ("xs", {"type": "array", "items": "int"}),
                     ("m", {"type": "map", "values": "int"}))  # fmt: skip
    # xs: count -2 (zig-zag 3), size 2, items 1 and 2 (2, 4), then one more block of 1
    # item (3 -> 6), the end; m: count -1 (1), size 3, "a" -> 5 (10), the end.
    data = bytes([3, 4, 2, 4, 2, 6, 0, 1, 6, 2, ord("a"), 10, 0])
    expected = schemaless_reader(io.BytesIO(data), parse_schema(schema), None)
    assert compile_reader(schema)(data, 0) == (expected, len(data))
    assert expected == {"xs": [1, 2, 3], "m": {"a": 5}}


@pytest.mark.parametrize("cut", [1, 5, 11])
def test_the_codec_refuses_a_cut_body_whichever_reader_reads_it(cut: int) -> None:
    data = CODEC.encode(sample("OrderCreated"))
    with pytest.raises(DecodeError, match="corrupt Avro body for OrderCreated"):
        CODEC.decode(data[:-cut])


def test_compiled_reader_refuses_a_block_count_past_the_end_at_once() -> None:
    ints = _record("R", ("xs", {"type": "array", "items": "int"}))
    huge = bytes([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])  # 2**62, zig-zag
    with pytest.raises(EOFError, match="block count past the end"):
        compile_reader(ints)(huge + b"\x02" * 8, 0)
    with pytest.raises(NotCompilable):  # nothing to check a count of nulls against
        compile_reader(_record("R", ("xs", {"type": "array", "items": "null"})))
