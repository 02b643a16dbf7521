"""Payment worker: takes payment for orders that are reserved and priced.

On OrderPaymentRequested it opens a payment (PaymentCreated) and asks a simulated
gateway, whose declines and latency are deterministic and configurable
(ECOM_GATEWAY_DECLINE_SHARE, ECOM_GATEWAY_LATENCY_MS): PaymentAuthorized or
PaymentFailed. If the order expired or was cancelled before it could be confirmed, an
authorized payment is given back (PaymentRefunded).

State: the `payments` table, one payment per order; a request delivered again is
answered again with the same outcome and the same event ids.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT, StreamT

from schemas import (
    Event,
    OrderCancelled,
    OrderExpired,
    OrderPaymentRequested,
    PaymentAuthorized,
    PaymentCreated,
    PaymentFailed,
    PaymentRefunded,
)
from streams.flow import Flow, Records, derived_id


@dataclass(frozen=True)
class Gateway:
    """A payment gateway simulation: the same order always gets the same answer."""

    decline_share: float
    latency_ms: float

    async def authorize(self, order_id: str) -> bool:
        """Wait the gateway's latency and answer whether the payment is authorized."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        return not declined(order_id, self.decline_share)


def declined(order_id: str, share: float) -> bool:
    """Tell whether the simulated gateway declines an order's payment."""
    digest = hashlib.sha256(order_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def register(app: faust.App, flow: Flow, gateway: Gateway) -> None:
    """Add the payment agent and its table to the app."""
    payments = flow.table("payments")

    @app.agent(flow.topic("orders"), name="payment")
    async def pay(stream: StreamT[bytes]) -> None:
        await flow.consume(stream, lambda records: _pay_all(flow, payments, gateway, records))


async def _pay_all(flow: Flow, payments: Any, gateway: Gateway, records: Records) -> None:
    for record in records:
        event = await flow.decode(record)
        if event is not None:
            await _handle(flow, payments, gateway, record, event)


async def _handle(
    flow: Flow, payments: Any, gateway: Gateway, record: EventT[Any], event: Event
) -> None:
    key = record.key
    payment = payments.get(key)
    if isinstance(event, OrderPaymentRequested):
        payment_id = f"pay-{event.order_id}"
        if payment is None or payment["status"] == "created":
            await flow.publish(
                PaymentCreated(
                    event_id=derived_id(event.event_id, "created"),
                    order_id=event.order_id,
                    payment_id=payment_id,
                    amount=event.amount,
                )
            )
            payment = {"payment_id": payment_id, "status": "created", "cause": event.event_id}
            flow.save(payments, record, payment)
            authorized = await gateway.authorize(event.order_id)
            payment = {**payment, "status": "authorized" if authorized else "failed"}
            flow.save(payments, record, payment)
        await flow.publish(_outcome(event, payment))
    elif (
        isinstance(event, (OrderExpired, OrderCancelled))
        and payment
        and payment["status"] == "authorized"
    ):
        reason = "order expired" if isinstance(event, OrderExpired) else "order cancelled"
        await flow.publish(
            PaymentRefunded(
                event_id=derived_id(payment["cause"], "refunded"),
                order_id=event.order_id,
                payment_id=payment["payment_id"],
                reason=reason,
            )
        )
        flow.save(payments, record, {**payment, "status": "refunded"})


def _outcome(request: OrderPaymentRequested, payment: dict[str, Any]) -> Event:
    ids = {"order_id": request.order_id, "payment_id": payment["payment_id"]}
    if payment["status"] in ("authorized", "refunded"):
        return PaymentAuthorized(
            event_id=derived_id(request.event_id, "authorized"),
            authorization=f"AUTH-{request.order_id}"[:64],
            **ids,
        )
    return PaymentFailed(
        event_id=derived_id(request.event_id, "failed"), reason="declined by the gateway", **ids
    )
