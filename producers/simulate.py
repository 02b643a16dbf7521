"""Deterministic shop traffic: users, a catalogue with prices and stock, tax rates, orders
and some cancellations. The same plan and seed always give the same events (ids,
products, quantities); only the timestamps are the wall clock's.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from schemas import (
    Event,
    Money,
    OrderCancellationRequested,
    OrderCreated,
    OrderLine,
    PriceChanged,
    ProductCreated,
    StockAdjusted,
    StockCommitted,
    StockReleased,
    StockReservationRequested,
    TaxRateChanged,
    UserCreated,
)

CATEGORIES = ("standard", "reduced", "food", "books")
TAX_RATES_BP = {
    "DE": (1900, 700, 700, 700),
    "FR": (2000, 550, 550, 550),
    "NL": (2100, 900, 900, 900),
    "AT": (2000, 1000, 1000, 1000),
    "ES": (2100, 1000, 1000, 400),
    "IT": (2200, 1000, 400, 400),
}
FIRST = ("Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Tim")
LAST = ("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie")
SIMULATED_ORDER_EVENTS = {"OrderCreated", "OrderCancellationRequested"}
GOODS = ("Mug", "Lamp", "Chair", "Novel", "Coffee", "Tea", "Desk", "Pen", "Atlas", "Honey")


@dataclass(frozen=True)
class ShopPlan:
    """How much traffic to make."""

    users: int
    products: int
    orders: int
    seed: int = 1
    cancel_share: float = 0.1
    min_stock: int = 20
    max_stock: int = 200
    max_lines: int = 3
    currency: str = "EUR"
    scarce_every: int = 0  # every Nth product gets min_stock only (0: stock is random)


class Shop:
    """Generates a plan's events in an order that makes sense (catalogue before orders)."""

    def __init__(self, plan: ShopPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.user_ids = [f"u-{plan.seed}-{i:06d}" for i in range(plan.users)]
        self.product_ids = [f"p-{plan.seed}-{i:05d}" for i in range(plan.products)]
        # Zipf-like popularity: a few products get most orders, so stock runs short.
        self.weights = [1.0 / (rank + 1) for rank in range(plan.products)]

    def events(self) -> Iterator[Event]:
        """Yield every event of the plan."""
        yield from self.reference_events()
        yield from self.order_events()

    def reference_events(self) -> Iterator[Event]:
        """Tax rates, users, products with prices and initial stock."""
        for country, rates in TAX_RATES_BP.items():
            for category, rate in zip(CATEGORIES, rates, strict=True):
                yield TaxRateChanged(
                    event_id=self._id(), country=country, category=category, rate_bp=rate
                )
        for user_id in self.user_ids:
            yield self._user(user_id)
        for index, product_id in enumerate(self.product_ids):
            yield from self._product(index, product_id)

    def order_events(self) -> Iterator[Event]:
        """Orders, with some cancellations requested a few orders later."""
        pending: list[tuple[int, str]] = []
        for number in range(self.plan.orders):
            order = self._order(number)
            yield order
            if self.rng.random() < self.plan.cancel_share:
                pending.append((number + self.rng.randint(1, 5), order.order_id))
            while pending and pending[0][0] <= number:
                _, order_id = pending.pop(0)
                yield OrderCancellationRequested(
                    event_id=self._id(), order_id=order_id, reason="changed mind"
                )
        for _, order_id in pending:
            yield OrderCancellationRequested(
                event_id=self._id(), order_id=order_id, reason="changed mind"
            )

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _user(self, user_id: str) -> UserCreated:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        return UserCreated(
            event_id=self._id(),
            user_id=user_id,
            email=f"{first}.{last}.{user_id}@example.com".lower(),
            name=f"{first} {last}",
            country=self.rng.choice(list(TAX_RATES_BP)),
        )

    def _product(self, index: int, product_id: str) -> Iterator[Event]:
        category = CATEGORIES[index % len(CATEGORIES)]
        name = f"{self.rng.choice(GOODS)} {index}"
        yield ProductCreated(
            event_id=self._id(), product_id=product_id, name=name, category=category
        )
        price = Money(amount_minor=self.rng.randint(199, 19999), currency=self.plan.currency)
        yield PriceChanged(event_id=self._id(), product_id=product_id, price=price)
        stock = self.rng.randint(self.plan.min_stock, self.plan.max_stock)
        if self.plan.scarce_every and index % self.plan.scarce_every == self.plan.scarce_every - 1:
            stock = self.plan.min_stock
        yield StockAdjusted(
            event_id=self._id(), product_id=product_id, quantity=stock, reason="initial stock"
        )

    def _order(self, number: int) -> OrderCreated:
        count = self.rng.randint(1, min(self.plan.max_lines, len(self.product_ids)))
        products: set[str] = set()
        while len(products) < count:
            products.add(self.rng.choices(self.product_ids, self.weights)[0])
        lines = tuple(
            OrderLine(product_id=p, quantity=self.rng.randint(1, 3)) for p in sorted(products)
        )
        return OrderCreated(
            event_id=self._id(),
            order_id=f"o-{self.plan.seed}-{number:07d}",
            user_id=self.rng.choice(self.user_ids),
            lines=lines,
            shipping_country=self.rng.choice(list(TAX_RATES_BP)),
            currency=self.plan.currency,
        )


def with_stock_flow(events: Iterable[Event]) -> Iterator[Event]:
    """Add, after each order, the stock requests and settlements the order flow would
    publish (a third released, the rest committed): a heavy, realistic inventory log
    for projection tests and benchmarks without running the workers."""
    for number, event in enumerate(events):
        yield event
        if not isinstance(event, OrderCreated):
            continue
        for line in event.lines:
            ids = {"product_id": line.product_id, "order_id": event.order_id}
            yield StockReservationRequested(**ids, quantity=line.quantity)
            if number % 3:
                yield StockCommitted(**ids)
            else:
                yield StockReleased(**ids, reason="cancelled")
