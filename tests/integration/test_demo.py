"""`ecom demo`: the whole shop comes up, every order ends, and everything stops again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecom.kafka import TopicAdmin
from ecom.topology import Topology
from tests.conftest import KafkaCluster
from tests.support import REPO, free_port, run_cli, unique

pytestmark = pytest.mark.kafka


def test_demo_runs_the_shop_until_every_order_has_ended(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    prefix = unique("demo") + "-"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "ECOM_TOPIC_PREFIX": prefix,
        "ECOM_HOME": str(tmp_path),
        "ECOM_TOPICS_FILE": str(REPO / "topics.yaml"),
        "ECOM_STORE": f"sqlite:///{tmp_path / 'view.db'}",
        "ECOM_QUERY_URL": f"http://127.0.0.1:{free_port()}",
        "ECOM_COMMANDS_PORT": str(free_port()),
        "ECOM_PAYMENT_TIMEOUT_S": "60",
    }
    try:
        result = run_cli("demo", "--orders", "60", "--rate", "30", "--seed", "5", "--exit",
                         env=env, timeout=420)  # fmt: skip
    finally:
        topology = Topology.load(REPO / "topics.yaml", prefix)
        TopicAdmin(kafka.bootstrap).delete([t.name for t in topology.topics()])
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    outcome = re.search(
        r"60 orders: confirmed (\d+), cancelled (\d+) .*expired (\d+)", result.stdout
    )
    assert outcome, result.stdout
    assert sum(int(n) for n in outcome.groups()) == 60
    assert "stock left, scarcest first: " in result.stdout
    assert re.search(r"projection lag: .*orders 0", result.stdout), result.stdout
    stopped = result.stdout.strip().splitlines()[-1]
    assert stopped == "stopped workers, projections, query-api, command-api"
    assert sorted(p.name for p in (tmp_path / ".ecom" / "logs").iterdir()) == [
        "command-api.log", "projections.log", "query-api.log", "workers.log"
    ]  # fmt: skip
