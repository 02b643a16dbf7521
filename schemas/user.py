"""User domain events."""

from __future__ import annotations

from schemas.base import Country, Email, Event, Id, Name


class UserCreated(Event, domain="user"):
    """A shop user signed up."""

    user_id: Id
    email: Email
    name: Name
    country: Country


class UserUpdated(Event, domain="user"):
    """A user changed their details; None means unchanged."""

    user_id: Id
    email: Email | None = None
    name: Name | None = None
    country: Country | None = None
