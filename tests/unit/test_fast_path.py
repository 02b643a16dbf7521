"""The fast paths of replay change no result.

The codec checks ids, currencies and countries inside pydantic-core instead of calling
the models' Python validators: on any record, bytes or not, it builds the same event
the models build, and refuses what they refuse with the same error (so dead letters do
not change). The fold marks fresh rows in place and inserts timeline entries in order:
it gives the rows the plain copy-and-sort fold gives. Rows become the same JSON text.
"""

from __future__ import annotations

import contextlib
import io
import json
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import SchemaValidator

from consumers.projection import _ENCODE, Envelope, Projection, Row, RowKey
from consumers.projections import PROJECTIONS
from consumers.projections.orders import Order
from ecom.errors import DecodeError, InvalidEvent
from schemas import EVENT_TYPES, Codec, Event
from schemas.base import CORE_PATTERNS, ID_PATTERN, _country, _currency, _email, _id, _utc
from schemas.codec import MAGIC, _fast_validator, _read_body, describe
from schemas.iso import COUNTRIES, CURRENCIES
from schemas.registry import default_registry
from tests.unit.test_projections import SEQUENCES, envelopes, order_events

CODEC = Codec()
REGISTRY = default_registry()
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- records near every edge the validators draw ------------------------------------

ID_CHARS = "ABCXYZabcxyz0189._:@-"
strings = st.one_of(
    st.from_regex(ID_PATTERN, fullmatch=True),
    st.text(alphabet=ID_CHARS + " /é\n\x00", max_size=70),
    st.integers(60, 70).map(lambda n: "a" * n),
    st.sampled_from(sorted(CURRENCIES | COUNTRIES)),
    st.sampled_from(["eur", "EURO", "XX", "ZZZ", "EUR\n", " EUR", "DE\n", "de", "", "ann@x.io"]),
    st.sampled_from(["standard", "food", "Food", "changed mind", "user", "out-of-stock"]),
    st.text(max_size=30),
)
integers = st.one_of(
    st.integers(-3, 3),
    st.integers(-(2**31) - 2, 2**31 + 1),
    st.sampled_from([10_000, 10_001, 1_000_000, 1_000_001, -1_000_000, -1_000_001]),
    st.sampled_from([10**15, 10**15 + 1]),
)
offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
moments = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.one_of(st.none(), st.just(UTC), st.builds(timezone, offsets)),
)


aware = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
GOOD = {  # valid values for the checks the fast path moves into pydantic-core, and others
    _id: st.from_regex(ID_PATTERN, fullmatch=True),
    _currency: st.sampled_from(sorted(CURRENCIES)),
    _country: st.sampled_from(sorted(COUNTRIES)),
    _utc: aware,
    _email: st.just("ann@example.com"),
    str: st.sampled_from(["standard", "Mug", "changed mind"]),
    int: st.integers(1, 5),
}
BAD = {  # and the values just beside them
    _id: st.sampled_from(["", "a" * 64, "a" * 65, "a\n", "a b", "é", "a/b", "\x00"]),
    _currency: st.sampled_from(["eur", "EURO", "EUR\n", " EUR", "XX", "ZZZ", ""]),
    _country: st.sampled_from(["de", "DEU", "DE\n", " DE", "ZZ", "D", ""]),
}


def values(annotation: Any, metadata: list[Any], bad: bool) -> st.SearchStrategy[Any]:
    """Good values of a field's type, or (bad) any value of its kind."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *more = typing.get_args(annotation)
        return values(inner, [*metadata, *more], bad)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(values(arg, metadata, bad) for arg in typing.get_args(annotation)))
    if origin is typing.Literal:
        return st.just("refund") if bad else st.sampled_from(typing.get_args(annotation))
    if origin is tuple:  # Avro arrays arrive as lists
        item = typing.get_args(annotation)[0]
        if not bad:
            return st.lists(values(item, [], False), min_size=1, max_size=4)
        one_bad = st.lists(values(item, [], True), min_size=1, max_size=4)
        return one_bad | st.just([]) | st.lists(values(item, [], False), min_size=101)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return records(annotation) if bad else record(annotation, None)
    checks = [m.func for m in metadata if isinstance(m, AfterValidator) and m.func in GOOD]
    check = checks[0] if checks else annotation
    if not bad:
        return GOOD.get(check, aware)
    near = {str: strings, int: integers, datetime: moments}[annotation]
    return BAD[check] | near if check in BAD else near


def records(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Records of a model: all good, or one field (or nested field) bad."""
    names = [None, None, *model.model_fields]
    return st.sampled_from(names).flatmap(lambda bad: record(model, bad))


def record(model: type[BaseModel], bad: str | None) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        name: values(field.annotation, list(field.metadata), name == bad)
        for name, field in model.model_fields.items()
    }
    return st.fixed_dictionaries(fields)


def same(built: Event, expected: Event) -> None:
    """The two events are one: class, values (timezones too), set fields, extras."""
    assert type(built) is type(expected)
    assert built == expected
    assert repr(built) == repr(expected)
    assert built.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert built.__pydantic_extra__ == expected.__pydantic_extra__
    assert built.__pydantic_private__ == expected.__pydantic_private__


def lets_through(check: Any, text: str) -> bool:
    try:
        check(text)
    except ValueError:
        return False
    return True


EDGES = [
    *sorted(CURRENCIES | COUNTRIES),
    *(code.lower() for code in sorted(CURRENCIES | COUNTRIES)),
    *(code + "\n" for code in sorted(CURRENCIES | COUNTRIES)),
    *(code[:-1] for code in sorted(CURRENCIES)),
    *(f"{c}" for c in "A9._:@-/ \n\x00é"),
    *("a" * n for n in range(62, 67)),
    "", "\n", "a\n", "a\nb", "\na", "ÄB", "p-7-00012", "0b1c2d3e-1111-4222-8333-444455556666",
]  # fmt: skip


@pytest.mark.parametrize("check", list(CORE_PATTERNS), ids=lambda check: check.__name__)
def test_each_pattern_lets_through_the_strings_its_function_does(check: Any) -> None:
    in_core = SchemaValidator({"type": "str", "pattern": CORE_PATTERNS[check]})

    def agree(text: str) -> None:
        try:
            in_core.validate_python(text)
        except ValidationError:
            assert not lets_through(check, text), text
        else:
            assert lets_through(check, text), text

    for text in EDGES:
        agree(text)

    @settings(max_examples=150, deadline=None)
    @given(strings | st.text() | st.sampled_from(EDGES).map(lambda edge: edge + "x"))
    def check_any(text: str) -> None:
        agree(text)

    check_any()


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_fast_validator_builds_and_refuses_what_the_model_does(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    fast = _fast_validator(model)

    @SETTINGS
    @given(records(model))
    def check(record: dict[str, Any]) -> None:
        try:
            expected = model.model_validate(record)
        except ValidationError:
            with pytest.raises(ValidationError):
                fast(record)
            return
        same(fast(record), expected)

    check()


# -- bytes: the codec against the model path ----------------------------------------


def model_path(payload: bytes) -> Event:
    """Decode as the codec did before its fast path: fastavro, then model_validate."""
    writer = REGISTRY.by_fingerprint[payload[2:10]]
    reader = REGISTRY.current[writer.event_type]
    resolve_into = None if reader is writer else reader.parsed
    record = _read_body(payload, writer.parsed, resolve_into, writer.label)
    try:
        return EVENT_TYPES[writer.event_type].model_validate(record)
    except ValidationError as error:
        raise InvalidEvent(f"{writer.event_type}: {describe(error)}") from error


def outcome(decode: Any, payload: bytes) -> Event | tuple[type[Exception], str]:
    try:
        return decode(payload)  # type: ignore[no-any-return]
    except (DecodeError, InvalidEvent) as error:
        return type(error), str(error)


def same_outcome(payload: bytes) -> None:
    built, expected = outcome(CODEC.decode, payload), outcome(model_path, payload)
    if isinstance(expected, Event):
        assert isinstance(built, Event)
        same(built, expected)
    elif expected[0] is DecodeError:  # the compiled reader words what broke its own way
        assert isinstance(built, tuple)
        assert (built[0], built[1].split(": ")[0]) == (DecodeError, expected[1].split(": ")[0])
    else:
        assert built == expected


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_codec_decodes_and_refuses_any_record_in_the_log_as_the_model_did(
    event_type: str,
) -> None:
    schema = REGISTRY.current[event_type]

    @SETTINGS
    @given(records(EVENT_TYPES[event_type]))
    def check(record: dict[str, Any]) -> None:
        body = io.BytesIO()
        try:  # only what Avro can carry reaches a log
            schemaless_writer(body, schema.parsed, record, disable_tuple_notation=True)
        except Exception:  # noqa: BLE001 - whatever fastavro refuses to write
            assume(False)
        same_outcome(MAGIC + schema.fingerprint + body.getvalue())

    check()


fingerprints = st.sampled_from(sorted(REGISTRY.by_fingerprint))


@settings(max_examples=200, deadline=None)
@given(fingerprints, st.binary(max_size=120))
def test_any_body_of_any_known_schema_decodes_or_fails_as_before(
    fingerprint: bytes, body: bytes
) -> None:
    same_outcome(MAGIC + fingerprint + body)


# -- folds: marking in place and timelines inserted in order --------------------------


def plain_apply(projection: Projection, rows: dict[RowKey, Row], envelope: Envelope) -> None:
    """Projection.apply as it was: copy every changed row to mark it."""
    keys = projection.keys(envelope.event)
    if not keys:
        return
    current = {key: rows.get(key) for key in keys}
    if any(row is not None and row.seen(envelope.position) for row in current.values()):
        return
    changed = projection.evolve(current, envelope.event)
    at = envelope.event.occurred_at
    rows.update({key: row.marked(envelope.position, at) for key, row in changed.items()})


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_the_fold_gives_the_rows_of_the_plain_fold(name: str) -> None:
    projection = PROJECTIONS[name]

    @settings(max_examples=30, deadline=None)
    @given(SEQUENCES[name])
    def check(events: list[Event]) -> None:
        plain: dict[RowKey, Row] = {}
        fast: dict[RowKey, Row] = {}
        for envelope in envelopes(events):
            for _ in range(2):
                handed_out = [(row, row.to_record()) for row in fast.values()]
                with contextlib.suppress(InvalidEvent):
                    plain_apply(projection, plain, envelope)
                with contextlib.suppress(InvalidEvent):
                    fast.update(projection.apply(fast, envelope))
                for row, record in handed_out:  # replaced maybe, never changed
                    assert row.to_record() == record
        assert {k: r.to_record() for k, r in fast.items()} == {
            k: r.to_record() for k, r in plain.items()
        }

    check()


@settings(max_examples=50, deadline=None)
@given(st.lists(order_events, max_size=30))
def test_a_timeline_stays_sorted_without_repeats(events: list[Event]) -> None:
    """So inserting an entry in order equals sorting the set of entries, as before."""
    rows: dict[RowKey, Row] = {}
    for envelope in envelopes(events):
        rows.update(PROJECTIONS["orders"].apply(rows, envelope))
    for row in rows.values():
        assert isinstance(row, Order)
        assert row.timeline == tuple(sorted(set(row.timeline)))


# -- rows as column values: the same JSON text ---------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner).map(tuple) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_row_json_is_the_json_encoders_text(value: Any) -> None:
    plain = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
    assert _ENCODE(value) == plain.encode(value)
