"""What the inventory log means: the stock rules every reader of it applies.

All events of a product sit on one partition of the inventory topic, in one order.
Stock is a deterministic fold of that history: a reservation request is decided at its
position (reserved if enough units are available, else rejected), a removal that would
leave reserved units without stock is invalid. The inventory worker and the inventory
projection apply these same rules to the same history, so they always agree, and stock
can never go below zero anywhere in the log.

StockReserved and StockReservationRejected announce decisions to the order flow; they
change nothing here (the request already did).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from schemas.base import Event
from schemas.errors import InvalidEvent
from schemas.inventory import (
    StockAdjusted,
    StockCommitted,
    StockReleased,
    StockReservationRequested,
)


@dataclass(frozen=True)
class StockLevel:
    """One product's stock: units on hand, units held for orders, and by whom."""

    on_hand: int = 0
    reserved: int = 0
    sold: int = 0
    rejected: int = 0
    reservations: Mapping[str, int] = field(default_factory=dict)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def but(self, **changes: object) -> StockLevel:
        """Return a copy with some fields changed: dataclasses.replace without its cost
        (it goes through __init__ field by field; these come from the rules below)."""
        if not changes.keys() <= _LEVEL_FIELDS:
            raise TypeError(f"StockLevel has no field {sorted(changes.keys() - _LEVEL_FIELDS)}")
        copy = object.__new__(StockLevel)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


_LEVEL_FIELDS = frozenset(item.name for item in fields(StockLevel))


@dataclass(frozen=True)
class Decision:
    """The outcome of a reservation request."""

    order_id: str
    quantity: int
    reserved: bool
    available: int


def apply_stock(level: StockLevel, event: Event) -> tuple[StockLevel, Decision | None]:
    """Return the stock after event, and the decision if it was a reservation request."""
    if isinstance(event, StockAdjusted):
        return _adjust(level, event), None
    if isinstance(event, StockReservationRequested):
        return _request(level, event)
    if isinstance(event, StockReleased):
        return _release(level, event.order_id), None
    if isinstance(event, StockCommitted):
        return _commit(level, event.order_id), None
    return level, None


def _adjust(level: StockLevel, event: StockAdjusted) -> StockLevel:
    on_hand = level.on_hand + event.quantity
    if on_hand < level.reserved:
        raise InvalidEvent(
            f"StockAdjusted {event.product_id}: {event.quantity} would leave {on_hand} on hand "
            f"for {level.reserved} reserved units; stock cannot go below zero"
        )
    return level.but(on_hand=on_hand)


def _request(level: StockLevel, event: StockReservationRequested) -> tuple[StockLevel, Decision]:
    held = level.reservations.get(event.order_id)
    if held is not None:  # asked twice: the first answer stands
        return level, Decision(event.order_id, held, True, level.available)
    if event.quantity > level.available:
        decision = Decision(event.order_id, event.quantity, False, level.available)
        return level.but(rejected=level.rejected + 1), decision
    reservations = {**level.reservations, event.order_id: event.quantity}
    reserved = level.but(reserved=level.reserved + event.quantity, reservations=reservations)
    return reserved, Decision(event.order_id, event.quantity, True, reserved.available)


def _release(level: StockLevel, order_id: str) -> StockLevel:
    held = level.reservations.get(order_id)
    if held is None:
        return level
    reservations = {k: v for k, v in level.reservations.items() if k != order_id}
    return level.but(reserved=level.reserved - held, reservations=reservations)


def _commit(level: StockLevel, order_id: str) -> StockLevel:
    held = level.reservations.get(order_id)
    if held is None:
        return level
    released = _release(level, order_id)
    return released.but(on_hand=released.on_hand - held, sold=released.sold + held)
