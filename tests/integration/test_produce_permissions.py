"""Publishing as a service that may not write: refused in one line (exit 3), nothing sent.

These run as the secure local cluster's services (their credentials files), and kill no
broker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecom.kafka import log_ends
from ecom.kafka.security import credentials_file
from ecom.topology import Topology
from tests.conftest import KafkaCluster
from tests.samples import SAMPLES
from tests.support import run_cli

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
    """monitor may write nothing: its idempotent producer is refused a producer id."""
    env = _as(kafka, "monitor", topology)
    events = tmp_path / "users.ndjson"
    events.write_text(json.dumps({"type": "UserCreated", **SAMPLES["UserCreated"]}) + "\n")
    for command in (
        ["produce", "UserCreated", "--data", USER],
        ["produce", "--file", str(events)],
        ["simulate", "--users", "2", "--products", "2", "--orders", "2"],
    ):
        result = run_cli(*command, env=env, timeout=60)
        _one_line_refusal(result, "principal User:monitor", "IdempotentWrite")
    assert _written(kafka, topology) == 0
