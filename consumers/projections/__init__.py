"""The projections the query view is built from."""

from __future__ import annotations

from consumers.projection import Projection
from consumers.projections.catalogue import Catalogue
from consumers.projections.inventory import Inventory
from consumers.projections.orders import Orders
from consumers.projections.pricing import Pricing

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (Catalogue(), Inventory(), Pricing(), Orders())
}


def by_names(names: tuple[str, ...] | list[str]) -> list[Projection]:
    """Return the named projections (all of them for none), or fail naming the known ones."""
    from ecom.errors import BadInput

    if not names:
        return list(PROJECTIONS.values())
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        raise BadInput(f"unknown projection {unknown[0]!r}; known: {', '.join(PROJECTIONS)}")
    return [PROJECTIONS[n] for n in names]
