"""Payment domain events. A payment is keyed by its order, so it shares the order's partition."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Event, Id, Money


class PaymentCreated(Event, domain="payment"):
    """A payment was opened for an order."""

    order_id: Id
    payment_id: Id
    amount: Money


class PaymentAuthorized(Event, domain="payment"):
    """The gateway authorized the payment."""

    order_id: Id
    payment_id: Id
    authorization: str = Field(min_length=1, max_length=64)


class PaymentFailed(Event, domain="payment"):
    """The gateway declined the payment."""

    order_id: Id
    payment_id: Id
    reason: str = Field(min_length=1, max_length=200)


class PaymentRefunded(Event, domain="payment"):
    """An authorized payment was given back: its order expired or was cancelled first."""

    order_id: Id
    payment_id: Id
    reason: str = Field(min_length=1, max_length=200)
