"""Payment worker: takes payment for orders that are reserved and priced.

On OrderPaymentRequested it opens a payment (PaymentCreated) and asks the payment
gateway (ecom.gateway) with an idempotency key derived from the payment id:
PaymentAuthorized or PaymentFailed. The requests of a batch go to the gateway together,
as a real gateway's calls would overlap. If the order expired or was cancelled before it
could be confirmed, an authorized payment is refunded (PaymentRefunded), also under an
idempotency key, so nothing is charged twice or refunded twice, whatever is handled
again after a crash.

State: the `payments` table, one payment per order; a request delivered again is
answered again with the same outcome and the same event ids. Rows go after
ECOM_FLOW_RETENTION_S once the order is final.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Self

import faust
from faust.types import StreamT

from ecom.gateway import Charge, Gateway
from schemas import (
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderExpired,
    OrderPaymentRequested,
    PaymentAuthorized,
    PaymentCreated,
    PaymentFailed,
    PaymentRefunded,
)
from streams.flow import Flow, Input, derived_id
from streams.state import Retention

TICK_S = 1.0
CLOSED = "closed"
WANTED = frozenset({"OrderPaymentRequested", "OrderConfirmed", "OrderCancelled", "OrderExpired"})


@dataclass(frozen=True)
class Payment:
    """An order's payment, as the payment worker keeps it."""

    payment_id: str
    cause: str  # the id of the OrderPaymentRequested
    status: str  # authorized, failed, refunded; closed: the order ended with no payment
    finished_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        finished = self.finished_at.isoformat() if self.finished_at else None
        return {"payment_id": self.payment_id, "cause": self.cause, "status": self.status,
                "finished_at": finished}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        finished = data["finished_at"]
        return cls(data["payment_id"], data["cause"], data["status"],
                   datetime.fromisoformat(finished) if finished else None)  # fmt: skip


def payment_id(order_id: str) -> str:
    return f"pay-{order_id}"


class Payments:
    """The payment agent's handling."""

    def __init__(self, flow: Flow[Payment], gateway: Gateway, retention: timedelta) -> None:
        self.flow = flow
        self.gateway = gateway
        self.retention = Retention(flow.table, retention, _finished_at)

    async def handle(self, inputs: list[Input]) -> None:
        requests, ended = [], set()
        for item in inputs:  # in log order: a request after its order ended is no charge
            if isinstance(item.event, (OrderCancelled, OrderExpired, OrderConfirmed)):
                ended.add(item.key)
            elif (
                isinstance(item.event, OrderPaymentRequested)
                and item.key not in ended
                and self._row(item) is None
            ):
                requests.append(item.event)
        answers = await self.gateway.authorize([_charge(r) for r in requests]) if requests else {}
        await self.flow.each(inputs, lambda item: self._one(item, answers))

    def _row(self, item: Input) -> Payment | None:
        return self.flow.table.get(item.partition, item.key)

    async def _one(self, item: Input, answers: dict[str, bool]) -> None:
        event, row = item.event, self._row(item)
        if isinstance(event, OrderPaymentRequested):
            if row is not None and row.status == CLOSED:
                # A request the order worker published again after it had ended the
                # order (it replayed its input after a crash): nothing to charge.
                return
            if row is None:
                self.flow.publish(_created(event))
                authorized = answers[payment_id(event.order_id)]
                row = Payment(payment_id(event.order_id), event.event_id,
                              "authorized" if authorized else "failed")  # fmt: skip
                self._put(item, row)
            self.flow.publish(_outcome(event, row))
        elif isinstance(event, (OrderExpired, OrderCancelled)):
            if row is None:
                row = Payment("", "", CLOSED)
            elif row.status == "authorized":
                await self.gateway.refund(f"{row.payment_id}/refund", row.payment_id)
                self.flow.publish(_refunded(event, row))
                row = replace(row, status="refunded")
            self._put(item, _finished(row, event))
        elif isinstance(event, OrderConfirmed) and row is not None:
            self._put(item, _finished(row, event))

    def _put(self, item: Input, row: Payment) -> None:
        self.flow.table.put(item.partition, item.key, row)
        self.retention.note(item.partition, item.key, row)


def _charge(request: OrderPaymentRequested) -> Charge:
    amount = request.amount
    return Charge(payment_id(request.order_id), request.order_id, amount.amount_minor,
                  amount.currency)  # fmt: skip


def _finished(row: Payment, event: Event) -> Payment:
    return row if row.finished_at else replace(row, finished_at=event.occurred_at)


def _finished_at(row: Payment) -> datetime | None:
    return row.finished_at


def _created(request: OrderPaymentRequested) -> PaymentCreated:
    return PaymentCreated(
        event_id=derived_id(request.event_id, "created"),
        occurred_at=request.occurred_at,
        order_id=request.order_id,
        payment_id=payment_id(request.order_id),
        amount=request.amount,
    )


def _outcome(request: OrderPaymentRequested, row: Payment) -> Event:
    ids = {"occurred_at": request.occurred_at, "order_id": request.order_id,
           "payment_id": row.payment_id}  # fmt: skip
    if row.status in ("authorized", "refunded"):
        return PaymentAuthorized(
            event_id=derived_id(request.event_id, "authorized"),
            authorization=f"AUTH-{request.order_id}"[:64],
            **ids,
        )
    return PaymentFailed(
        event_id=derived_id(request.event_id, "failed"), reason="declined by the gateway", **ids
    )


def _refunded(event: OrderExpired | OrderCancelled, row: Payment) -> PaymentRefunded:
    reason = "order expired" if isinstance(event, OrderExpired) else "order cancelled"
    return PaymentRefunded(
        event_id=derived_id(row.cause, "refunded"),
        occurred_at=event.occurred_at,
        order_id=event.order_id,
        payment_id=row.payment_id,
        reason=reason,
    )


def register(app: faust.App, flow: Flow[Payment], gateway: Gateway,
             retention: timedelta) -> None:  # fmt: skip
    """Add the payment agent to the app."""
    payments = Payments(flow, gateway, retention)

    @app.agent(flow.topic("orders"), name="payment")
    async def pay(stream: StreamT[bytes]) -> None:
        await flow.consume(stream, payments.handle, WANTED)

    @app.timer(TICK_S)
    async def forget() -> None:
        await flow.forget(payments.retention)
