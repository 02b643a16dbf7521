"""The projection runner on the real cluster, with SQLite and PostgreSQL."""

from __future__ import annotations

import struct
from collections import defaultdict

import pytest

from consumers.projection import Envelope, Position, Row, RowKey
from consumers.projections import PROJECTIONS
from consumers.projections.inventory import Stock
from consumers.queries import QueryView
from consumers.store import Store
from ecom.kafka import GroupAdmin
from ecom.topology import Topology
from schemas import Codec, StockAdjusted
from schemas.codec import MAGIC
from tests.conftest import KafkaCluster
from tests.runners import run_until_caught_up, running, shop_log
from tests.support import wait_for

pytestmark = pytest.mark.kafka
CODEC = Codec()


def _expected(
    projection_name: str, topology: Topology, kafka: KafkaCluster, count: int
) -> dict[RowKey, Row]:
    """Fold what is really in the topics, in memory, as the reference."""
    projection = PROJECTIONS[projection_name]
    names = {topology.topic(t).name: t for t in projection.topics}
    rows: dict[RowKey, Row] = {}
    for record in sorted(
        kafka.read(list(names), count),
        key=lambda r: (r.topic(), r.partition(), r.offset()),
    ):
        event = CODEC.decode(record.value())
        position = Position(names[record.topic()], record.partition(), record.offset())
        rows.update(projection.apply(rows, Envelope(event, position)))
    return rows


@pytest.mark.parametrize("name", ["inventory", "orders", "catalogue", "pricing"])
def test_view_equals_the_fold_of_the_log(
    kafka: KafkaCluster, topology: Topology, store_url: str, view: Store, name: str
) -> None:
    events = shop_log(300)
    kafka.seed(topology, events)
    run_until_caught_up(PROJECTIONS[name], store_url, topology, kafka.bootstrap)
    projection = PROJECTIONS[name]
    count = sum(
        1 for e in events if topology.for_event(e.event_type).spec.name in projection.topics
    )
    expected = _expected(name, topology, kafka, count)
    generation = view.active_generation(name)
    assert generation == 1
    stored = {}
    for row_type in projection.row_types:
        keys = [key for (kind, key) in expected if kind is row_type]
        stored.update({(row_type, k): v for k, v in view.load(row_type, 1, keys).items()})
    assert stored == expected
    assert len(stored) > 0


def test_restart_resumes_from_the_offsets_in_the_database(
    kafka: KafkaCluster, topology: Topology, store_url: str, view: Store
) -> None:
    inventory = PROJECTIONS["inventory"]
    kafka.seed(topology, [StockAdjusted(product_id="p-1", quantity=5)])
    first = run_until_caught_up(inventory, store_url, topology, kafka.bootstrap)
    assert first.progress.applied == 1
    kafka.seed(topology, [StockAdjusted(product_id="p-1", quantity=2)])
    second = run_until_caught_up(inventory, store_url, topology, kafka.bootstrap)
    assert second.progress.applied == 1, "only the new event is read again"
    stock = view.load(Stock, 1, [("p-1",)])[("p-1",)]
    assert isinstance(stock, Stock)
    assert stock.on_hand == 7
    answer = QueryView(view).inventory("p-1")
    assert answer is not None
    assert answer["freshness"]["inventory"]["lag"] == 0


def _raw(kafka: KafkaCluster, topology: Topology, key: str, value: bytes) -> None:
    with kafka.producer() as producer:
        topic = topology.topic("inventory").name
        producer.produce(topic, value, key, [("origin", b"test")], timestamp=1_700_000_000_000)


def test_poison_records_go_to_the_dlq_with_their_story_and_the_runner_goes_on(
    kafka: KafkaCluster, topology: Topology, store_url: str, view: Store
) -> None:
    kafka.seed(topology, [StockAdjusted(product_id="p-9", quantity=3)])
    _raw(kafka, topology, "p-9", b"this is not avro")
    _raw(kafka, topology, "p-9", MAGIC + b"\x01" * 8 + b"\x02")
    kafka.seed(topology, [StockAdjusted(product_id="p-9", quantity=-5, reason="bad count")])
    kafka.seed(topology, [StockAdjusted(product_id="p-9", quantity=4)])
    runner = run_until_caught_up(PROJECTIONS["inventory"], store_url, topology, kafka.bootstrap)
    assert (runner.progress.applied, runner.progress.dead_letters) == (2, 3)
    stock = view.load(Stock, 1, [("p-9",)])[("p-9",)]
    assert isinstance(stock, Stock)
    assert stock.on_hand == 7, "every good event is applied, the bad ones are not"

    dead = kafka.read([topology.dead_letters("projections").name], 3)
    inventory = kafka.read([topology.topic("inventory").name], 5)
    (inventory_partition,) = {record.partition() for record in inventory}
    by_error = defaultdict(list)
    for record in dead:
        headers = dict(record.headers() or [])
        assert record.key() == b"p-9"
        assert headers["kafka_dlt-original-topic"] == topology.topic("inventory").name.encode()
        assert headers["kafka_dlt-original-consumer-group"] == runner.group.encode()
        original_partition = struct.unpack(">i", headers["kafka_dlt-original-partition"])[0]
        assert original_partition == inventory_partition
        original_offset = struct.unpack(">q", headers["kafka_dlt-original-offset"])[0]
        assert original_offset in (1, 2, 3)
        assert len(headers["kafka_dlt-original-timestamp"]) == 8
        assert headers["kafka_dlt-original-timestamp-type"] == b"CreateTime"
        by_error[headers["kafka_dlt-exception-fqcn"].decode()].append((record, headers))
    assert set(by_error) == {
        "ecom.errors.DecodeError",
        "ecom.errors.UnknownSchema",
        "ecom.errors.InvalidEvent",
    }
    ((garbage, headers),) = by_error["ecom.errors.DecodeError"]
    assert garbage.value() == b"this is not avro"
    assert headers["origin"] == b"test", "original headers kept"
    assert garbage.timestamp()[1] == 1_700_000_000_000, "original timestamp kept"
    ((invalid, headers),) = by_error["ecom.errors.InvalidEvent"]
    assert b"stock cannot go below zero" in headers["kafka_dlt-exception-message"]
    assert CODEC.decode(invalid.value()).event_type == "StockAdjusted"


def test_offsets_are_committed_to_kafka_for_its_lag_tooling(
    kafka: KafkaCluster, topology: Topology, store_url: str, view: Store
) -> None:
    kafka.seed(topology, shop_log(20))
    runner = run_until_caught_up(PROJECTIONS["orders"], store_url, topology, kafka.bootstrap)
    stored = {k: v.next_offset for k, v in view.offsets("orders", 1).items()}
    admin = GroupAdmin(kafka.bootstrap)
    wait_for(lambda: admin.committed(runner.group) == stored, 30, "Kafka commit")


def test_the_runner_keeps_applying_while_events_arrive(
    kafka: KafkaCluster, topology: Topology, store_url: str, view: Store
) -> None:
    store = view
    with running(PROJECTIONS["inventory"], store_url, topology, kafka.bootstrap) as runner:
        for round_ in range(1, 4):
            kafka.seed(topology, [StockAdjusted(product_id="p-2", quantity=1)])

            def applied(expected: int = round_) -> bool:
                rows = store.load(Stock, 1, [("p-2",)])
                return bool(rows) and rows[("p-2",)].on_hand == expected  # type: ignore[attr-defined]

            wait_for(applied, 60, f"round {round_} applied")
        assert runner.progress.applied == 3
