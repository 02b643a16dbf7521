"""The errors the contracts raise, and the root of ecomstream's error tree.

The contracts are the lowest layer, so the root of the tree lives here; the whole tree
is drawn (and importable) in ecom.errors, which everything above the contracts uses.
"""

from __future__ import annotations

# The tree's public home is ecom.errors: dead letters and tracebacks name these classes so.
PUBLIC_MODULE = "ecom.errors"


class EcomError(Exception):
    """Base of every error ecomstream raises on purpose; carries the process exit code."""

    __module__ = PUBLIC_MODULE

    exit_code = 1


class BadInput(EcomError):
    """The user asked for something invalid; nothing was changed."""

    __module__ = PUBLIC_MODULE

    exit_code = 2


class InvalidEvent(BadInput):
    """Event data breaks its contract; the event was not published."""

    __module__ = PUBLIC_MODULE


class DecodeError(EcomError):
    """A record's bytes are not an event this code can read."""

    __module__ = PUBLIC_MODULE


class UnknownSchema(DecodeError):
    """The record was written with a schema whose fingerprint is not known here."""

    __module__ = PUBLIC_MODULE


class NotCompilable(EcomError):
    """Internal: a schema the compiled Avro writer does not cover (the codec falls back
    to fastavro's writer)."""

    __module__ = PUBLIC_MODULE


class NotPriceable(EcomError):
    """An order cannot be priced (no price, tax category or tax rate); the order flow
    turns it into OrderPricingFailed, it never reaches a user as an error."""

    __module__ = PUBLIC_MODULE
