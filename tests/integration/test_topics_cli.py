"""`ecom topics apply|describe` against the real cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecom.kafka import TopicAdmin
from tests.conftest import KafkaCluster
from tests.support import REPO, TOPIC_COUNT, run_cli

pytestmark = pytest.mark.kafka


def _apply(env: dict[str, str], prefix: str, *extra: str) -> tuple[int, str, str]:
    result = run_cli("topics", "apply", "--prefix", prefix, *extra, env=env)
    return result.returncode, result.stdout, result.stderr


def _layout(kafka: KafkaCluster, prefix: str) -> dict[str, tuple[int, int]]:
    live = TopicAdmin(kafka.bootstrap).live_topics()
    return {
        name: (t.partitions, t.replication_factor)
        for name, t in live.items()
        if name.startswith(prefix)
    }


def _edited_topics_file(tmp_path: Path, old: str, new: str) -> str:
    text = (REPO / "topics.yaml").read_text()
    assert old in text
    path = tmp_path / "topics.yaml"
    path.write_text(text.replace(old, new))
    return str(path)


def test_apply_twice_changes_nothing_the_second_time(
    kafka: KafkaCluster, cli_env: dict[str, str], topic_prefix: str
) -> None:
    code, out, err = _apply(cli_env, topic_prefix)
    assert code == 0, err
    assert out.count("create") == TOPIC_COUNT
    code, out, err = _apply(cli_env, topic_prefix)
    assert code == 0, err
    assert "no changes" in out
    assert set(_layout(kafka, topic_prefix).values()) == {(6, 3)}


def test_dry_run_prints_the_plan_and_creates_nothing(
    kafka: KafkaCluster, cli_env: dict[str, str], topic_prefix: str
) -> None:
    code, out, _ = _apply(cli_env, topic_prefix, "--dry-run")
    assert code == 0
    assert f"create          {topic_prefix}orders: 6 partitions, replication factor 3" in out
    assert "dry run" in out
    assert _layout(kafka, topic_prefix) == {}


def test_fewer_partitions_is_refused_and_nothing_changes(
    kafka: KafkaCluster, cli_env: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    assert _apply(cli_env, topic_prefix)[0] == 0
    before = _layout(kafka, topic_prefix)
    fewer = _edited_topics_file(tmp_path, "  partitions: 6", "  partitions: 3")
    code, out, err = _apply(cli_env, topic_prefix, "--file", fewer)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "cannot remove partitions" in err
    assert _layout(kafka, topic_prefix) == before


def test_replication_factor_above_broker_count_is_refused(
    kafka: KafkaCluster, cli_env: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    four = _edited_topics_file(tmp_path, "  replication_factor: 3", "  replication_factor: 4")
    code, _, err = _apply(cli_env, topic_prefix, "--file", four)
    assert code == 2
    assert err.count("\n") == 1
    assert "replication factor 4 needs 4 brokers but the cluster has 3" in err
    assert "Traceback" not in err
    assert _layout(kafka, topic_prefix) == {}


def test_replication_factor_change_in_place_is_refused(
    kafka: KafkaCluster, cli_env: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    assert _apply(cli_env, topic_prefix)[0] == 0
    before = _layout(kafka, topic_prefix)
    two = _edited_topics_file(tmp_path, "  replication_factor: 3", "  replication_factor: 2")
    code, _, err = _apply(cli_env, topic_prefix, "--file", two)
    assert code == 2
    assert "cannot change it in place" in err
    assert _layout(kafka, topic_prefix) == before


def test_config_drift_is_repaired(
    kafka: KafkaCluster, cli_env: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    assert _apply(cli_env, topic_prefix)[0] == 0
    shorter = _edited_topics_file(tmp_path, "retention.ms: 2592000000", "retention.ms: 86400000")
    code, out, err = _apply(cli_env, topic_prefix, "--file", shorter)
    assert code == 0, err
    assert "retention.ms 2592000000 -> 86400000" in out
    live = TopicAdmin(kafka.bootstrap).live_topics([f"{topic_prefix}projections-dlq"])
    assert live[f"{topic_prefix}projections-dlq"].configs["retention.ms"] == "86400000"


@pytest.mark.parametrize("value", ["banana", "-5"])
def test_a_config_value_kafka_refuses_is_bad_input_and_nothing_is_created(
    kafka: KafkaCluster, cli_env: dict[str, str], topic_prefix: str, tmp_path: Path, value: str
) -> None:
    bad = _edited_topics_file(tmp_path, "retention.ms: 2592000000", f"retention.ms: {value}")
    code, _, err = _apply(cli_env, topic_prefix, "--file", bad)
    assert code == 2, err
    assert err.count("\n") == 1
    assert "retention.ms" in err
    assert _layout(kafka, topic_prefix) == {}


def test_describe_shows_live_and_missing_topics(cli_env: dict[str, str], topic_prefix: str) -> None:
    missing = run_cli("topics", "describe", "--prefix", topic_prefix, env=cli_env)
    assert missing.returncode == 0
    assert missing.stdout.count("missing") == TOPIC_COUNT
    assert _apply(cli_env, topic_prefix)[0] == 0
    result = run_cli("topics", "describe", "--prefix", topic_prefix, env=cli_env)
    row = next(
        line for line in result.stdout.splitlines() if line.startswith(f"{topic_prefix}orders")
    )
    assert row.split() == [f"{topic_prefix}orders", "6", "3", "2", "-1", "delete", "ok"]


def test_unreachable_cluster_is_one_line_and_exit_3() -> None:
    result = run_cli("topics", "describe", "--bootstrap", "127.0.0.1:1", timeout=60)
    assert result.returncode == 3
    assert result.stderr.startswith("error: cannot reach Kafka at 127.0.0.1:1")
    assert result.stderr.count("\n") == 1
