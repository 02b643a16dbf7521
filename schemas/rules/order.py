"""The order vocabulary: statuses, which are final, and the order they move in.

The order worker (streams/) and the orders projection (consumers/) both speak it, and so
do the demo, the benchmarks and the tests.
"""

from __future__ import annotations

from typing import Final, Literal

from schemas.order import OrderCancelled, OrderConfirmed, OrderExpired

Status = Literal[
    "created", "stock-reserved", "priced", "awaiting-payment", "confirmed", "cancelled", "expired"
]
# The order worker's own, coarser states: waiting for stock and price, then for payment.
RESERVING: Final = "reserving"
AWAITING_PAYMENT: Final = "awaiting-payment"
WAITING: Final = (RESERVING, AWAITING_PAYMENT)
CONFIRMED: Final = "confirmed"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"
FINAL: Final = frozenset({CONFIRMED, CANCELLED, EXPIRED})
FINAL_EVENTS: Final = (OrderConfirmed, OrderCancelled, OrderExpired)
FINAL_EVENT_TYPES: Final = frozenset(cls.__name__ for cls in FINAL_EVENTS)

# How far along a status is: a status never moves back to a lower rank.
RANK: Final[dict[str, int]] = {
    "created": 0,
    "stock-reserved": 1,
    "priced": 1,
    "awaiting-payment": 2,
    CONFIRMED: 3,
    CANCELLED: 3,
    EXPIRED: 3,
}


def is_final(status: str | None) -> bool:
    """Tell whether an order in this status can change no more."""
    return status in FINAL
