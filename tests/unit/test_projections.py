"""Projections are pure folds: the stored view equals an in-memory fold, and applying
any event twice changes nothing."""

from __future__ import annotations

import contextlib
import zlib
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.engine import Engine
from consumers.projection import Envelope, Position, Projection, Row, RowKey
from consumers.projections import PROJECTIONS
from consumers.projections.inventory import Stock
from consumers.projections.orders import Order
from consumers.store import SqliteStore, Store, table_name
from ecom.errors import InvalidEvent
from ecom.topology import Topology
from producers.simulate import Shop, ShopPlan, with_stock_flow
from schemas import Event
from tests.samples import SAMPLES, sample
from tests.support import REPO

TOPOLOGY = Topology.load(REPO / "topics.yaml")
START = datetime(2026, 3, 1, tzinfo=UTC)
PRODUCTS = ["p-1", "p-2"]
ORDERS = ["o-1", "o-2", "o-3"]


def envelopes(events: list[Event]) -> list[Envelope]:
    """Give events the positions Kafka would: topic by type, partition by key."""
    next_offset: dict[tuple[str, int], int] = defaultdict(int)
    result = []
    for event in events:
        topic = TOPOLOGY.for_event(event.event_type)
        key = str(getattr(event, topic.key_field(event.event_type)))
        partition = zlib.crc32(key.encode()) % 3
        offset = next_offset[(topic.spec.name, partition)]
        next_offset[(topic.spec.name, partition)] += 1
        result.append(Envelope(event, Position(topic.spec.name, partition, offset)))
    return result


def fold_in_memory(
    projection: Projection, items: list[Envelope], twice: bool = False
) -> dict[RowKey, Row]:
    rows: dict[RowKey, Row] = {}
    for envelope in items:
        for _ in range(2 if twice else 1):
            with contextlib.suppress(InvalidEvent):
                rows.update(projection.apply(rows, envelope))
    return rows


def stored_rows(store: Store, projection: Projection) -> dict[RowKey, Row]:
    rows: dict[RowKey, Row] = {}
    for row_type in projection.row_types:
        for record in store.fetch(f"SELECT * FROM {table_name(row_type.TABLE, 1)}"):
            row = row_type.from_record(record)
            rows[(row_type, row.key)] = row
    return rows


# -- random event sequences -----------------------------------------------------------

seconds = st.integers(0, 10_000).map(lambda s: START + timedelta(seconds=s))
product = st.sampled_from(PRODUCTS)
order = st.sampled_from(ORDERS)
inventory_events = st.one_of(
    st.builds(
        lambda p, q, t: sample("StockAdjusted", product_id=p, quantity=q, occurred_at=t),
        product,
        st.integers(-6, 12).filter(bool),
        seconds,
    ),
    st.builds(
        lambda p, o, q, t: sample(
            "StockReservationRequested", product_id=p, order_id=o, quantity=q, occurred_at=t
        ),
        product,
        order,
        st.integers(1, 5),
        seconds,
    ),
    st.builds(
        lambda p, o, t: sample("StockReleased", product_id=p, order_id=o, occurred_at=t),
        product,
        order,
        seconds,
    ),
    st.builds(
        lambda p, o, t: sample("StockCommitted", product_id=p, order_id=o, occurred_at=t),
        product,
        order,
        seconds,
    ),
    st.builds(
        lambda p, o, t: sample("StockReserved", product_id=p, order_id=o, occurred_at=t),
        product,
        order,
        seconds,
    ),
)
order_types = [
    "OrderCreated",
    "OrderCancellationRequested",
    "OrderStockReserved",
    "OrderPriced",
    "OrderPaymentRequested",
    "OrderConfirmed",
    "OrderCancelled",
    "OrderExpired",
    "PaymentCreated",
    "PaymentAuthorized",
    "PaymentFailed",
]
order_events = st.builds(
    lambda kind, o, t: sample(kind, order_id=o, occurred_at=t),
    st.sampled_from(order_types),
    order,
    seconds,
)
catalogue_events = st.one_of(
    st.builds(
        lambda n, t: sample("UserCreated", name=n, occurred_at=t),
        st.sampled_from(["Ada", "Alan"]),
        seconds,
    ),
    st.builds(
        lambda n, t: sample("UserUpdated", name=n, occurred_at=t),
        st.sampled_from(["Grace", None]),
        seconds,
    ),
    st.builds(
        lambda p, c, t: sample("ProductCreated", product_id=p, category=c, occurred_at=t),
        product,
        st.sampled_from(["food", "books"]),
        seconds,
    ),
    st.builds(
        lambda p, c, t: sample("ProductUpdated", product_id=p, category=c, occurred_at=t),
        product,
        st.sampled_from(["standard", None]),
        seconds,
    ),
)
pricing_events = st.one_of(
    st.builds(
        lambda p, a, t: sample(
            "PriceChanged",
            product_id=p,
            occurred_at=t,
            price={"amount_minor": a, "currency": "EUR"},
        ),
        product,
        st.integers(0, 5000),
        seconds,
    ),
    st.builds(
        lambda c, r, t: sample("TaxRateChanged", category=c, rate_bp=r, occurred_at=t),
        st.sampled_from(["food", "books"]),
        st.integers(0, 2500),
        seconds,
    ),
    st.builds(
        lambda p, c, t: sample("ProductCreated", product_id=p, category=c, occurred_at=t),
        product,
        st.sampled_from(["food", "books"]),
        seconds,
    ),
)
SEQUENCES = {
    "inventory": st.lists(inventory_events, max_size=40),
    "orders": st.lists(order_events, max_size=40),
    "catalogue": st.lists(catalogue_events, max_size=30),
    "pricing": st.lists(pricing_events, max_size=30),
}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(f"sqlite:///{tmp_path / 'view.db'}")
    yield store
    store.close()


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_stored_view_equals_in_memory_fold_and_twice_changes_nothing(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    projection = PROJECTIONS[name]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(SEQUENCES[name], st.integers(1, 7))
    def check(events: list[Event], batch: int) -> None:
        items = envelopes(events)
        expected = fold_in_memory(projection, items)
        assert fold_in_memory(projection, items, twice=True) == expected
        store = SqliteStore(f"sqlite:///{tmp_path_factory.mktemp('p') / 'view.db'}")
        store.create_generation(projection, 1, "active")
        engine = Engine(projection, store, 1)
        for start in range(0, len(items), batch):
            engine.commit(engine.fold(items[start : start + batch]), [])
        engine.commit(engine.fold(items), [])  # the whole log again: nothing changes
        assert stored_rows(store, projection) == {k: v for k, v in expected.items()}
        store.close()

    check()


# -- the rules, one scenario at a time --------------------------------------------------


def _fold(name: str, events: list[Event]) -> dict[RowKey, Row]:
    return fold_in_memory(PROJECTIONS[name], envelopes(events))


def test_stock_reserves_while_available_and_rejects_beyond() -> None:
    rows = _fold(
        "inventory",
        [
            sample("StockAdjusted", quantity=3),
            sample("StockReservationRequested", order_id="o-1", quantity=2),
            sample("StockReservationRequested", order_id="o-2", quantity=2),
            sample("StockReservationRequested", order_id="o-1", quantity=2),
        ],
    )
    stock = rows[(Stock, ("p-1",))]
    assert isinstance(stock, Stock)
    assert (stock.on_hand, stock.reserved, stock.available, stock.rejected) == (3, 2, 1, 1)
    assert stock.reservations == {"o-1": 2}


def test_commit_and_release_settle_reservations_once() -> None:
    rows = _fold(
        "inventory",
        [
            sample("StockAdjusted", quantity=5),
            sample("StockReservationRequested", order_id="o-1", quantity=2),
            sample("StockReservationRequested", order_id="o-2", quantity=1),
            sample("StockCommitted", order_id="o-1"),
            sample("StockCommitted", order_id="o-1"),
            sample("StockReleased", order_id="o-2"),
            sample("StockReleased", order_id="o-2"),
        ],
    )
    stock = rows[(Stock, ("p-1",))]
    assert isinstance(stock, Stock)
    assert (stock.on_hand, stock.reserved, stock.sold, stock.reservations) == (3, 0, 2, {})


def test_removing_reserved_stock_is_invalid() -> None:
    projection = PROJECTIONS["inventory"]
    items = envelopes(
        [
            sample("StockAdjusted", quantity=2),
            sample("StockReservationRequested", order_id="o-1", quantity=2),
            sample("StockAdjusted", quantity=-1),
        ]
    )
    rows: dict[RowKey, Row] = {}
    rows.update(projection.apply(rows, items[0]))
    rows.update(projection.apply(rows, items[1]))
    with pytest.raises(InvalidEvent, match="stock cannot go below zero"):
        projection.apply(rows, items[2])


def test_order_status_moves_forward_and_final_states_stick() -> None:
    rows = _fold(
        "orders",
        [
            sample("OrderCreated"),
            sample("OrderPriced"),
            sample("OrderStockReserved"),
            sample("OrderPaymentRequested"),
            sample("PaymentCreated"),
            sample("PaymentAuthorized"),
            sample("OrderConfirmed"),
            sample("OrderCancelled"),
            sample("OrderExpired"),
        ],
    )
    order = rows[(Order, ("o-1",))]
    assert isinstance(order, Order)
    assert order.status == "confirmed"
    assert order.total_minor == 4758
    assert order.payment is not None
    assert order.payment["status"] == "authorized"
    steps = [step for _, step, _, _ in order.timeline]
    assert {
        "created",
        "priced",
        "stock-reserved",
        "awaiting-payment",
        "payment-authorized",
        "confirmed",
    } <= set(steps)


def test_events_of_an_order_no_order_created_named_make_no_row() -> None:
    """A cancel of a made-up id (the command API accepts it: it cannot know) and payment
    events before any OrderCreated change nothing, as in the order flow; the order's
    own OrderCreated, later, starts it as usual."""
    t = [START + timedelta(seconds=i) for i in range(4)]
    early = [
        sample("OrderCancellationRequested", occurred_at=t[0]),
        sample("PaymentCreated", occurred_at=t[1]),
        sample("PaymentFailed", occurred_at=t[2]),
    ]
    orders = PROJECTIONS["orders"]
    assert fold_in_memory(orders, envelopes(early)) == {}
    rows = fold_in_memory(orders, envelopes([*early, sample("OrderCreated", occurred_at=t[3])]))
    (order,) = rows.values()
    assert isinstance(order, Order)
    assert (order.status, order.payment) == ("created", None)
    assert [step for _, step, _, _ in order.timeline] == ["created"]


def test_a_second_order_created_with_the_same_id_changes_nothing() -> None:
    orders = PROJECTIONS["orders"]
    first = sample("OrderCreated", order_id="o-5", user_id="u-1")
    second = sample("OrderCreated", order_id="o-5", user_id="u-9", currency="USD")
    priced = sample("OrderPriced", order_id="o-5")
    repriced = sample("OrderPriced", order_id="o-5", total={"amount_minor": 1, "currency": "EUR"})
    rows: dict[RowKey, Row] = {}
    for offset, event in enumerate([first, priced]):
        rows.update(orders.apply(rows, Envelope(event, Position("orders", 0, offset))))
    before = dict(rows)
    for offset, event in enumerate([second, repriced], start=2):
        rows.update(orders.apply(rows, Envelope(event, Position("orders", 0, offset))))
    (key,) = rows
    row, was = rows[key], before[key]
    assert isinstance(row, Order)
    assert isinstance(was, Order)
    assert (row.user_id, row.currency, row.total_minor) == (was.user_id, was.currency, 4758)
    assert [step for _, step, _, _ in row.timeline] == ["created", "priced"]


# -- partition-local rows (what parallel replay relies on) ------------------------------


def test_every_row_an_event_touches_is_keyed_by_its_record_key() -> None:
    plan = ShopPlan(users=30, products=20, orders=300, seed=5, cancel_share=0.2)
    events = [sample(t) for t in SAMPLES] + list(with_stock_flow(Shop(plan).events()))
    checked = 0
    for projection in PROJECTIONS.values():
        if not projection.partition_local:
            continue
        topics = {TOPOLOGY.topic(t).spec.name for t in projection.topics}
        for event in events:
            topic = TOPOLOGY.for_event(event.event_type)
            if topic.spec.name not in topics:
                continue
            record_key = str(getattr(event, topic.key_field(event.event_type)))
            for _, key in projection.keys(event):
                assert key == (record_key,), (projection.name, event.event_type, key)
                checked += 1
        # And topics.yaml gives its topics as many partitions each (else one process).
        assert len({TOPOLOGY.topic(t).spec.partitions for t in projection.topics}) == 1
    assert checked > 1000


def test_a_generation_made_without_its_indexes_gets_them_when_asked(tmp_path: Path) -> None:
    orders = PROJECTIONS["orders"]
    store = SqliteStore(f"sqlite:///{tmp_path / 'view.db'}")
    query = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    store.create_generation(orders, 1, "replaying", indexed=False)
    assert store.fetch(query) == []
    store.ensure_indexes(orders, 1)
    store.ensure_indexes(orders, 1)  # a resumed replay asks again
    names = {row["name"] for row in store.fetch(query)}
    assert names == {"orders__g1__user_id", "orders__g1__status"}
    store.close()
