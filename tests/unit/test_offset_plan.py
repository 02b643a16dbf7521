"""The reset planning rules (Kafka's consumer-groups tool's), without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecom.errors import BadInput
from ecom.offset_plan import (
    LogState,
    Plan,
    Specifier,
    make_plan,
    parse_datetime,
    parse_duration,
    parse_scope,
    read_csv,
    to_csv,
)

A0, A1 = ("a", 0), ("a", 1)
STATE = LogState(
    earliest={A0: 3, A1: 0}, latest={A0: 20, A1: 10}, committed={A0: 5}, by_time={A0: 7, A1: -1}
)


@pytest.mark.parametrize(
    ("specifier", "expected"),
    [
        (Specifier("to_earliest"), {A0: 3, A1: 0}),
        (Specifier("to_latest"), {A0: 20, A1: 10}),
        (Specifier("to_current"), {A0: 5, A1: 10}),  # no commit: the log end
        (Specifier("to_offset", 15), {A0: 15, A1: 10}),  # clamped to the end
        (Specifier("to_offset", 1), {A0: 3, A1: 1}),  # clamped to the start
        (Specifier("to_datetime", datetime.now(UTC)), {A0: 7, A1: 10}),  # none that late: end
        (Specifier("from_file", {A0: 99, A1: 4}), {A0: 20, A1: 4}),
    ],
)
def test_each_specifier_plans_kafkas_offsets(
    specifier: Specifier, expected: dict[tuple[str, int], int]
) -> None:
    assert make_plan(specifier, [A1, A0], STATE).offsets == expected


def test_shift_by_is_clamped_and_needs_a_committed_offset() -> None:
    assert make_plan(Specifier("shift_by", -10), [A0], STATE).offsets == {A0: 3}
    with pytest.raises(BadInput, match="no committed offset"):
        make_plan(Specifier("shift_by", 1), [A0, A1], STATE)


def test_clamping_is_reported() -> None:
    plan = make_plan(Specifier("to_offset", 50), [A0], STATE)
    assert plan.notes == ["a-0: offset 50 is past the log end, using 20"]


def test_dates_without_a_zone_are_utc_and_durations_are_iso() -> None:
    assert parse_datetime("2026-11-26T08:00:00.000") == datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert parse_datetime("2026-11-26T09:00:00+01:00") == datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert parse_duration("P1DT2H30M1.5S") == timedelta(days=1, hours=2, minutes=30, seconds=1.5)
    assert parse_duration("pt36h") == timedelta(hours=36)
    for bad in ("PT", "1H", "P1W"):
        with pytest.raises(BadInput, match="bad duration"):
            parse_duration(bad)
    with pytest.raises(BadInput, match="bad date-time"):
        parse_datetime("yesterday")


def test_scope_parsing() -> None:
    assert parse_scope(("a", "b:2,0")) == {"a": None, "b": [0, 2]}
    with pytest.raises(BadInput):
        parse_scope(("b:x",))


def test_export_reads_back_and_four_columns_pick_the_group() -> None:
    plan = Plan({A1: 4, A0: 9})
    assert to_csv(plan) == "a,0,9\na,1,4\n"
    assert read_csv(to_csv(plan), "g") == {A0: 9, A1: 4}
    assert read_csv("g,a,0,1\nh,a,0,2\n", "h") == {A0: 2}
    with pytest.raises(BadInput, match="no offsets for group"):
        read_csv("g,a,0,1\n", "x")
