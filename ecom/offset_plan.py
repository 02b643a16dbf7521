"""Plan a consumer group's new offsets, the way Kafka's consumer-groups tool does.

Pure: the caller fetches log bounds, committed offsets and timestamp lookups, and this
module decides. The rules follow `kafka-consumer-groups --reset-offsets`, so a plan
made here equals the one Kafka's tool prints for the same group and specifier:

- --to-earliest / --to-latest: the log start / end offset.
- --to-current: the committed offset, or the log end where the group has none.
- --to-offset N, --shift-by N, --from-file: clamped into [log start, log end]; shifting
  a partition without a committed offset is an error.
- --to-datetime / --by-duration: the first offset at or after the time, or the log end.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ecom.errors import BadInput

Partition = tuple[str, int]
SPECIFIERS = (
    "to_earliest",
    "to_latest",
    "to_current",
    "to_offset",
    "shift_by",
    "to_datetime",
    "by_duration",
    "from_file",
)
_DURATION = re.compile(
    r"^(?P<sign>[-+]?)P(?:(?P<days>[-+]?\d+)D)?"
    r"(?:T(?:(?P<hours>[-+]?\d+)H)?(?:(?P<minutes>[-+]?\d+)M)?(?:(?P<seconds>[-+]?\d+(?:[.,]\d+)?)S)?)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Specifier:
    """Where to move: one of SPECIFIERS and its argument."""

    kind: str
    value: int | datetime | dict[Partition, int] | None = None

    @property
    def needs_times(self) -> bool:
        return self.kind in ("to_datetime", "by_duration")


@dataclass(frozen=True)
class LogState:
    """What the plan is made from: log bounds, the group's commits, timestamp answers."""

    earliest: dict[Partition, int]
    latest: dict[Partition, int]
    committed: dict[Partition, int]
    by_time: dict[Partition, int] = field(default_factory=dict)  # -1: no record that late


@dataclass
class Plan:
    """New offsets by partition, and notes such as clamped values."""

    offsets: dict[Partition, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, int, int]]:
        return [(t, p, o) for (t, p), o in sorted(self.offsets.items())]


def make_plan(specifier: Specifier, partitions: list[Partition], state: LogState) -> Plan:
    """Return the new offset of every partition in scope."""
    plan = Plan()
    kind = specifier.kind
    for tp in sorted(partitions):
        if kind == "to_earliest":
            plan.offsets[tp] = state.earliest[tp]
        elif kind == "to_latest":
            plan.offsets[tp] = state.latest[tp]
        elif kind == "to_current":
            plan.offsets[tp] = state.committed.get(tp, state.latest[tp])
        elif specifier.needs_times:
            plan.offsets[tp] = _at_time(tp, state, plan)
        else:
            plan.offsets[tp] = _clamped(tp, _requested(specifier, tp, state), state, plan)
    return plan


def _requested(specifier: Specifier, tp: Partition, state: LogState) -> int:
    if specifier.kind == "to_offset":
        assert isinstance(specifier.value, int)
        return specifier.value
    if specifier.kind == "shift_by":
        assert isinstance(specifier.value, int)
        if tp not in state.committed:
            raise BadInput(
                f"cannot shift offset for partition {tp[0]}-{tp[1]}: the group has no "
                "committed offset there (use --to-earliest, --to-latest or --to-offset)"
            )
        return state.committed[tp] + specifier.value
    assert isinstance(specifier.value, dict)
    return specifier.value[tp]


def _clamped(tp: Partition, offset: int, state: LogState, plan: Plan) -> int:
    low, high = state.earliest[tp], state.latest[tp]
    if offset > high:
        plan.notes.append(f"{tp[0]}-{tp[1]}: offset {offset} is past the log end, using {high}")
        return high
    if offset < low:
        plan.notes.append(f"{tp[0]}-{tp[1]}: offset {offset} is before the log start, using {low}")
        return low
    return offset


def _at_time(tp: Partition, state: LogState, plan: Plan) -> int:
    found = state.by_time.get(tp, -1)
    if found < 0:
        plan.notes.append(f"{tp[0]}-{tp[1]}: no record at or after that time, using the log end")
        return state.latest[tp]
    return found


# -- parsing what the user typed ---------------------------------------------------------


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 date-time; without a zone it is UTC (as Kafka's tool assumes)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(
            f"bad date-time {text!r}: expected ISO-8601 such as 2026-11-26T08:00:00.000 "
            "(UTC unless a zone such as +01:00 or Z is given)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO-8601 duration as PnDTnHnMn.nS (days are 24 hours)."""
    match = _DURATION.match(text.strip())
    parts = match.groupdict() if match else {}
    if not match or not any(parts[k] for k in ("days", "hours", "minutes", "seconds")):
        raise BadInput(f"bad duration {text!r}: expected ISO-8601 PnDTnHnMn.nS, such as PT1H30M")
    duration = timedelta(
        days=int(parts["days"] or 0),
        hours=int(parts["hours"] or 0),
        minutes=int(parts["minutes"] or 0),
        seconds=float((parts["seconds"] or "0").replace(",", ".")),
    )
    return -duration if parts["sign"] == "-" else duration


def parse_scope(topics: tuple[str, ...]) -> dict[str, list[int] | None]:
    """Parse --topic T or T:0,2 values; None means every partition of T."""
    scope: dict[str, list[int] | None] = {}
    for value in topics:
        name, _, partitions = value.partition(":")
        if not name or (":" in value and not partitions):
            raise BadInput(f"bad --topic {value!r}: expected TOPIC or TOPIC:P[,P...]")
        if not partitions:
            scope[name] = None
            continue
        try:
            chosen = [int(p) for p in partitions.split(",")]
        except ValueError:
            raise BadInput(f"bad partition in --topic {value!r}: partitions are numbers") from None
        scope[name] = sorted(set((scope.get(name) or []) + chosen))
    return scope


def to_csv(plan: Plan) -> str:
    """Return the plan as `topic,partition,offset` lines, as Kafka's --export writes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(plan.rows())
    return out.getvalue()


def read_csv(text: str, group: str) -> dict[Partition, int]:
    """Read a plan written by --export (ours or Kafka's): 3 columns, or 4 with the group."""
    offsets: dict[Partition, int] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) == 4:
            if row[0] != group:
                continue
            row = row[1:]
        if len(row) != 3:
            raise BadInput(f"line {number}: expected topic,partition,offset (or group first)")
        topic, partition, offset = row
        try:
            offsets[(topic, int(partition))] = int(offset)
        except ValueError:
            raise BadInput(f"line {number}: partition and offset must be numbers") from None
    if not offsets:
        raise BadInput(f"the file holds no offsets for group {group}")
    return offsets
