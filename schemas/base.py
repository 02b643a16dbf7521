"""The event base class and the value types every contract shares.

Events are facts: frozen, past-tense, one Avro schema each. Money is integer minor
units plus an ISO 4217 currency; timestamps are timezone-aware and stored in UTC.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from schemas.iso import COUNTRIES, CURRENCIES

EVENT_TYPES: dict[str, type[Event]] = {}
ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,64}$"
_ID = re.compile(ID_PATTERN)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[A-Za-z]{2,}$")


def _id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError("must be 1-64 characters of letters, digits and ._:@-")
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a timezone (e.g. 2026-01-31T12:00:00Z)")
    return value.astimezone(UTC)


def _currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. EUR, USD)")
    return value


def _country(value: str) -> str:
    if value not in COUNTRIES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE)")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _one_of(codes: frozenset[str]) -> str:
    return "^(?:" + "|".join(re.escape(code) for code in sorted(codes)) + ")$"


# The same checks as patterns pydantic-core runs itself, without a call back into Python:
# the codec's fast path validates with these (tests/unit/test_fast_path.py shows they let
# exactly the same strings through) and falls back to the functions for the error message.
CORE_PATTERNS: dict[Any, str] = {
    _id: ID_PATTERN,
    _currency: _one_of(CURRENCIES),
    _country: _one_of(COUNTRIES),
}

Id = Annotated[str, AfterValidator(_id)]
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Currency = Annotated[str, AfterValidator(_currency)]
Country = Annotated[str, AfterValidator(_country)]
Email = Annotated[str, AfterValidator(_email)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000)]
BasisPoints = Annotated[int, Field(strict=True, ge=0, le=10_000)]
MAX_MINOR_UNITS = 10**15
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR_UNITS)]
Int32 = Annotated[int, Field(strict=True, ge=-(2**31), le=2**31 - 1)]


def now_utc() -> datetime:
    """Return the current time in UTC, at the microsecond precision Avro keeps."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """Return a fresh, unique event id."""
    return str(uuid.uuid4())


class Value(BaseModel):
    """A frozen value inside an event."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Money(Value):
    """An amount in integer minor units (cents) of an ISO 4217 currency."""

    amount_minor: MinorUnits
    currency: Currency


class Event(Value):
    """A fact one domain publishes. Subclasses name their domain: `class X(Event, domain=...)`."""

    event_type: ClassVar[str]
    domain: ClassVar[str]

    event_id: Id = Field(default_factory=new_event_id)
    occurred_at: UtcDatetime = Field(default_factory=now_utc)

    def __init_subclass__(cls, domain: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if domain:
            cls.domain = domain
            cls.event_type = cls.__name__
            EVENT_TYPES[cls.__name__] = cls

    @classmethod
    def avro_name(cls) -> str:
        """Return the full Avro name of the event's schema."""
        return f"ecomstream.{cls.domain}.{cls.event_type}"
