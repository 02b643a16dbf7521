"""Publishing on the real cluster: topics, keys, order, headers, failures, bad input."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from ecom.errors import DeliveryFailed
from ecom.kafka import log_ends
from ecom.topology import Topology
from producers.producer import EventProducer
from schemas import Codec, OrderCreated, StockAdjusted
from tests.conftest import KafkaCluster
from tests.samples import SAMPLES, sample
from tests.support import run_cli, unique

pytestmark = pytest.mark.kafka
CODEC = Codec()


def _offsets(kafka: KafkaCluster, topology: Topology) -> dict[tuple[str, int], int]:
    return log_ends(kafka.bootstrap, [t.name for t in topology.topics()])


def _env(cli_env: dict[str, str], topology: Topology) -> dict[str, str]:
    return cli_env | {"ECOM_TOPIC_PREFIX": topology.prefix}


def test_events_land_on_their_topic_keyed_and_ordered_with_headers(
    kafka: KafkaCluster, topology: Topology
) -> None:
    products = [f"p-{i}" for i in range(8)]
    sent: dict[str, list[int]] = defaultdict(list)
    with EventProducer(topology, kafka.bootstrap, "/ecomstream/test") as producer:
        for seq in range(1, 401):
            product = products[seq % len(products)]
            producer.publish(StockAdjusted(product_id=product, quantity=seq, reason="t"))
            sent[product].append(seq)
        producer.publish(sample("UserCreated"))
    inventory = topology.topic("inventory").name
    records = kafka.read([inventory, topology.topic("users").name], 401)
    partitions: dict[str, set[int]] = defaultdict(set)
    seen: dict[str, list[int]] = defaultdict(list)
    for record in records:
        event = CODEC.decode(record.value())
        headers = dict(record.headers() or [])
        assert headers["ce_type"] == event.avro_name().encode()
        assert headers["ce_id"] == event.event_id.encode()
        assert headers["ce_specversion"] == b"1.0"
        assert headers["content-type"] == b"application/avro"
        assert headers["ce_source"] == b"/ecomstream/test"
        if isinstance(event, StockAdjusted):
            assert record.topic() == inventory
            assert record.key() == event.product_id.encode()
            partitions[event.product_id].add(record.partition())
            seen[event.product_id].append(event.quantity)
        else:
            assert record.topic() == topology.topic("users").name
            assert record.key() == b"u-1"
    assert all(len(p) == 1 for p in partitions.values()), "one key, one partition"
    assert dict(seen) == dict(sent), "per key, in the order sent"


def test_cli_produce_prints_where_the_event_landed(
    kafka: KafkaCluster, topology: Topology, cli_env: dict[str, str]
) -> None:
    data = json.dumps(SAMPLES["OrderCreated"] | {"order_id": "o-cli"})
    result = run_cli("produce", "OrderCreated", "--data", data, env=_env(cli_env, topology))
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:4] == ["OrderCreated", "o-cli", "->", topology.topic("orders").name]
    partition, offset = int(words[5]), int(words[7])
    (record,) = kafka.read([topology.topic("orders").name], 1)
    assert (record.partition(), record.offset()) == (partition, offset)
    event = CODEC.decode(record.value())
    assert isinstance(event, OrderCreated)
    assert event.order_id == "o-cli"


def test_delivery_to_a_missing_topic_raises(kafka: KafkaCluster) -> None:
    missing = Topology.load(Path("topics.yaml"), prefix=unique("missing-") + "-")
    producer = EventProducer(missing, kafka.bootstrap, "/ecomstream/test")
    producer.publish(sample("UserCreated"))
    with pytest.raises(DeliveryFailed, match=r"not acknowledged.*Unknown topic"):
        producer.flush(30)


def test_cli_exit_3_when_the_topic_is_missing_or_brokers_are_down(cli_env: dict[str, str]) -> None:
    data = json.dumps(SAMPLES["UserCreated"])
    missing = run_cli("produce", "UserCreated", "--data", data,
                      env=cli_env | {"ECOM_TOPIC_PREFIX": unique("none-") + "-"})  # fmt: skip
    assert missing.returncode == 3
    assert "does not exist" in missing.stderr
    assert missing.stderr.count("\n") == 1
    down = run_cli("produce", "UserCreated", "--data", data, "--bootstrap", "127.0.0.1:1")
    assert down.returncode == 3
    assert down.stderr.startswith("error: cannot reach Kafka at 127.0.0.1:1")


ORDER = SAMPLES["OrderCreated"]
NO_USER = {k: v for k, v in ORDER.items() if k != "user_id"}
NEGATIVE = ORDER | {"lines": [{"product_id": "p-1", "quantity": -1}]}
STOCK = {"product_id": "p-1", "quantity": 1}
BAD_CURRENCY = {"product_id": "p-1", "price": {"amount_minor": 100, "currency": "EUX"}}
BAD_INPUT = [
    (["OrderPlaced", "--data", "{}"], "unknown event type"),
    (["OrderCreated", "--data", '{"order_id": "o-1",'], "invalid JSON"),
    (["OrderCreated", "--data", json.dumps(NO_USER)], "user_id: Field required"),
    (
        ["OrderCreated", "--data", json.dumps(ORDER | {"lines": "two"})],
        "lines: Input should be a valid tuple",
    ),
    (["OrderCreated", "--data", json.dumps(NEGATIVE)], "greater than 0"),
    (["PriceChanged", "--data", json.dumps(BAD_CURRENCY)], "not an ISO 4217 currency"),
    ([], "give EVENT_TYPE --data JSON"),
    (["StockAdjusted", "--source", "", "--data", json.dumps(STOCK)], "--source is empty"),
    (
        ["StockAdjusted", "--source", "/shop\nX-Evil: 1", "--data", json.dumps(STOCK)],
        "is not a URI-reference",
    ),
    # The CLI's principal may write the orders topic, but not the workers' decisions.
    (
        ["OrderConfirmed", "--data", json.dumps(SAMPLES["OrderConfirmed"])],
        "OrderConfirmed is sent by order-flow-order, not by command-api",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2_and_publishes_nothing(
    kafka: KafkaCluster, topology: Topology, cli_env: dict[str, str], args: list[str], message: str
) -> None:
    before = _offsets(kafka, topology)
    result = run_cli("produce", *args, env=_env(cli_env, topology))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert _offsets(kafka, topology) == before


def _ndjson_lines(count: int) -> list[str]:
    return [
        json.dumps({"type": "StockAdjusted", "product_id": f"p-{i % 50}", "quantity": 1 + i % 7})
        for i in range(count)
    ]


def test_ndjson_with_one_bad_line_among_10000_sends_nothing(
    kafka: KafkaCluster, topology: Topology, cli_env: dict[str, str], tmp_path: Path
) -> None:
    lines = _ndjson_lines(10_000)
    lines[4321] = json.dumps({"type": "StockAdjusted", "product_id": "p-1", "quantity": 0})
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n")
    before = _offsets(kafka, topology)
    result = run_cli("produce", "--file", str(path), env=_env(cli_env, topology))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: {path}:4322: StockAdjusted: quantity: must not be zero"
    )
    assert _offsets(kafka, topology) == before


def test_ndjson_from_stdin_publishes_every_line(
    kafka: KafkaCluster, topology: Topology, cli_env: dict[str, str]
) -> None:
    lines = _ndjson_lines(10_000)
    result = run_cli(
        "produce", "--file", "-", env=_env(cli_env, topology), input_text="\n".join(lines)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("published 10000 events")
    after = _offsets(kafka, topology)
    inventory = topology.topic("inventory").name
    assert sum(v for (topic, _), v in after.items() if topic == inventory) == 10_000


def test_simulate_publishes_the_whole_plan(
    kafka: KafkaCluster, topology: Topology, cli_env: dict[str, str]
) -> None:
    args = ["simulate", "--users", "10", "--products", "5", "--orders", "200", "--seed", "3"]
    result = run_cli(*args, env=_env(cli_env, topology))
    assert result.returncode == 0, result.stderr
    ndjson = run_cli(*args, "--ndjson")
    expected = len(ndjson.stdout.splitlines())
    published = sum(_offsets(kafka, topology).values())
    assert published == expected
    assert "OrderCreated 200" in result.stdout


def test_keys_land_where_java_and_faust_clients_put_them(
    kafka: KafkaCluster, topology: Topology
) -> None:
    """One entity, one partition, whichever client publishes: our producer hashes keys
    like the Java client and aiokafka (murmur2), not like librdkafka's default."""
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(topology.topic("inventory").spec.partitions))
    landed: dict[str, int] = {}
    with EventProducer(topology, kafka.bootstrap, "/ecomstream/test") as producer:
        for number in range(200):
            delivery = producer.publish_and_wait(
                StockAdjusted(product_id=f"p-{number}", quantity=1)
            )
            landed[delivery.key] = delivery.partition
    java_like = DefaultPartitioner()
    assert landed == {key: java_like(key.encode(), partitions, partitions) for key in landed}


def _order_line(number: int) -> str:
    return json.dumps({"type": "OrderCreated", **ORDER, "order_id": f"o-part-{number}"})


def test_a_record_refused_mid_file_is_named_with_what_was_published(
    kafka: KafkaCluster, topology: Topology, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The broker refuses the inventory record (too big for its topic, set so here):
    the error says which line failed and that the other three were published."""
    inventory = topology.topic("inventory").name
    small = ConfigEntry("max.message.bytes", "64", incremental_operation=AlterConfigOpType.SET)
    tiny = ConfigResource(ConfigResource.Type.TOPIC, inventory, incremental_configs=[small])
    admin = kafka.admin()  # kept: its client must outlive the request
    for future in admin.admin.incremental_alter_configs([tiny]).values():
        future.result()
    stock = json.dumps({"type": "StockAdjusted", "product_id": "p-part", "quantity": 3})
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join([_order_line(1), _order_line(2), stock, _order_line(3)]) + "\n")
    result = run_cli("produce", "--file", str(path), env=_env(cli_env, topology))
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1
    assert f"{inventory} key p-part" in result.stderr
    assert "3 of 4 record(s) sent were acknowledged (published); 1 not: line 3" in result.stderr
    orders = topology.topic("orders").name
    assert sum(v for (topic, _), v in _offsets(kafka, topology).items() if topic == orders) == 3
