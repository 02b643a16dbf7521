"""Inventory: per product, units on hand, reserved, available and sold.

Folds the inventory topic with the stock rules of schemas.rules.stock, the same rules the
inventory worker decides with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from consumers.projection import Projection, Row, RowKey, Table, columns
from schemas import Event
from schemas.rules.stock import StockLevel, apply_stock

STOCK_EVENTS = ("StockAdjusted", "StockReservationRequested", "StockReleased", "StockCommitted")


@dataclass(frozen=True)
class Stock(Row):
    """One product's stock."""

    TABLE: ClassVar[Table] = Table(
        "inventory",
        ("product_id",),
        columns(
            product_id="TEXT",
            on_hand="BIGINT",
            reserved="BIGINT",
            available="BIGINT",
            sold="BIGINT",
            rejected="BIGINT",
            reservations="TEXT",
        ),
    )
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset({"reservations"})

    product_id: str
    on_hand: int = 0
    reserved: int = 0
    available: int = 0
    sold: int = 0
    rejected: int = 0
    reservations: Mapping[str, int] = field(default_factory=dict)

    def level(self) -> StockLevel:
        return StockLevel(self.on_hand, self.reserved, self.sold, self.rejected, self.reservations)

    @classmethod
    def of(cls, product_id: str, level: StockLevel, base: Row | None) -> Stock:
        """Return the row of a stock level, keeping base's bookkeeping (applied, updated_at)."""
        row = base if isinstance(base, Stock) else None
        if row is None:
            keep: dict[str, Any] = (
                {"applied": base.applied, "updated_at": base.updated_at} if base else {}
            )
            row = cls(product_id, **keep)
        return row.changed(  # not __init__: a frozen dataclass's is slow, and has nothing to check
            product_id=product_id,
            on_hand=level.on_hand,
            reserved=level.reserved,
            available=level.available,
            sold=level.sold,
            rejected=level.rejected,
            reservations=dict(level.reservations),
        )


class Inventory(Projection):
    """Stock per product."""

    name = "inventory"
    topics = ("inventory",)
    row_types = (Stock,)
    partition_local = True  # rows keyed by the record key

    def keys(self, event: Event) -> list[RowKey]:
        if event.event_type not in STOCK_EVENTS:
            return []
        return [(Stock, (event.product_id,))]  # type: ignore[attr-defined]

    def evolve(self, rows: dict[RowKey, Row | None], event: Event) -> dict[RowKey, Row]:
        ((key, row),) = rows.items()
        current = row.level() if isinstance(row, Stock) else StockLevel()
        level, _ = apply_stock(current, event)
        if level == current:
            return {}
        return {key: Stock.of(key[1][0], level, row)}
