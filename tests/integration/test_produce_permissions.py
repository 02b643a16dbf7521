"""Publishing as a service that may not write: refused in one line (exit 3), nothing sent.

These run as the secure local cluster's services (their credentials files), and kill no
broker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ecom.errors import KafkaRefused
from ecom.kafka import BytesProducer, log_ends
from ecom.kafka.security import credentials_file
from ecom.topology import Topology
from tests.conftest import KafkaCluster
from tests.samples import SAMPLES
from tests.support import run_cli, unique

pytestmark = pytest.mark.kafka
USER = json.dumps(SAMPLES["UserCreated"])


def _as(kafka: KafkaCluster, service: str, topology: Topology) -> dict[str, str]:
    """The environment of a CLI run as `service` on this test's topics."""
    if kafka.local is None or not kafka.local.is_secure():
        pytest.fail(f"needs the secure local cluster's service credentials, not {kafka.origin}")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "ECOM_KAFKA_CREDENTIALS": str(credentials_file(kafka.local.root, service)),
        "ECOM_TOPIC_PREFIX": topology.prefix,
    }


def _written(kafka: KafkaCluster, topology: Topology) -> int:
    return sum(log_ends(kafka.bootstrap, [t.name for t in topology.topics()]).values())


def _one_line_refusal(result: object, *words: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 3, stderr  # type: ignore[attr-defined]
    assert stderr.startswith("error: "), stderr
    assert stderr.count("\n") == 1, stderr
    for word in words:
        assert word in stderr


def test_a_principal_without_idempotent_write_is_told_so_in_one_line(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    """monitor may write nothing: its idempotent producer is refused a producer id, or
    (whichever Kafka says first) the check before sending finds it may not write users."""
    env = _as(kafka, "monitor", topology)
    events = tmp_path / "users.ndjson"
    events.write_text(json.dumps({"type": "UserCreated", **SAMPLES["UserCreated"]}) + "\n")
    for command in (
        ["produce", "UserCreated", "--data", USER],
        ["produce", "--file", str(events)],
        ["simulate", "--users", "2", "--products", "2", "--orders", "2"],
    ):
        result = run_cli(*command, env=env, timeout=60)
        _one_line_refusal(result, "principal User:monitor")
        users = f"topic {topology.prefix}users (for UserCreated)"
        assert "IdempotentWrite" in result.stderr or users in result.stderr
    assert _written(kafka, topology) == 0


def _order(number: int) -> str:
    order = SAMPLES["OrderCreated"] | {"order_id": f"o-mix-{number}"}
    return json.dumps({"type": "OrderCreated", **order})


def test_a_file_with_a_record_for_a_topic_the_principal_may_not_write_sends_nothing(
    kafka: KafkaCluster, topology: Topology, tmp_path: Path
) -> None:
    """inventory may write orders, not inventory: the whole file is refused, not 3 of 4."""
    stock = json.dumps({"type": "StockAdjusted", "product_id": "p-mix", "quantity": 3})
    events = tmp_path / "mixed.ndjson"
    events.write_text("\n".join([_order(1), _order(2), stock, _order(3)]) + "\n")
    result = run_cli("produce", "--file", str(events), env=_as(kafka, "inventory", topology))
    inventory = topology.topic("inventory").name
    _one_line_refusal(
        result, f"principal User:inventory may not write topic {inventory} (for StockAdjusted)"
    )
    assert "Topic authorization failed" in result.stderr
    assert _written(kafka, topology) == 0


def test_a_topic_the_principal_may_not_see_is_not_called_missing(
    kafka: KafkaCluster, topology: Topology
) -> None:
    users = topology.topic("users").name
    hidden = run_cli("produce", "UserCreated", "--data", USER,
                     env=_as(kafka, "inventory", topology))  # fmt: skip
    _one_line_refusal(hidden, f"topic {users} (for UserCreated) does not exist", "or principal "
                      "User:inventory may not use it")  # fmt: skip
    nowhere = unique("none-") + "-"
    as_admin = _as(kafka, "admin", topology) | {"ECOM_TOPIC_PREFIX": nowhere}
    missing = run_cli("produce", "UserCreated", "--data", USER, env=as_admin)
    _one_line_refusal(missing, f"topic {nowhere}users (for UserCreated) does not exist")
    assert "may not use it" not in missing.stderr, "admin may see every topic: it is missing"
    assert _written(kafka, topology) == 0


def test_serving_reports_goes_on_after_the_fatal_error_and_the_next_flush_raises_it(
    kafka: KafkaCluster, topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """poll() keeps the fatal error (the command API's thread serves reports in a loop);
    flush() raises it as one clear refusal."""
    for name, value in _as(kafka, "monitor", topology).items():
        monkeypatch.setenv(name, value)
    producer = BytesProducer(kafka.bootstrap)
    producer.produce(topology.topic("users").name, b"x", "u-1")
    deadline = time.monotonic() + 30
    while producer.fatal is None and time.monotonic() < deadline:
        producer.poll(0.1)
    assert producer.fatal is not None, "the producer id was never refused"
    with pytest.raises(KafkaRefused, match=r"principal User:monitor write.*IdempotentWrite"):
        producer.flush(5)
