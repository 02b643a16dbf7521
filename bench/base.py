"""Benchmark plumbing: Kafka's own perf tools, run from the local cluster's jars.

Benchmarks run beside Kafka's ProducerPerformance / ConsumerPerformance on the same
cluster and topic settings, and print both figures and their ratio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ecom.cluster import LocalCluster
from ecom.errors import EcomError
from ecom.settings import get_settings


def run_kafka_tool(main_class: str, *args: str, timeout: float = 900) -> str:
    """Run one of Kafka's Java tools from the local cluster's jars."""
    return LocalCluster.from_settings(get_settings()).run_tool(main_class, *args, timeout=timeout)


@dataclass(frozen=True)
class Rate:
    """A measured throughput."""

    records: int
    seconds: float
    bytes: int

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


_PRODUCER_SUMMARY = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def producer_performance(
    bootstrap: str, topic: str, records: int, record_size: int, props: dict[str, str]
) -> Rate:
    """Run Kafka's ProducerPerformance and return its overall rate."""
    output = run_kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(records), "--record-size", str(record_size),
        "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
        *(f"{k}={v}" for k, v in props.items()),
    )  # fmt: skip
    summaries = list(_PRODUCER_SUMMARY.finditer(output))
    if not summaries:
        raise EcomError(f"could not read ProducerPerformance's summary: {output[-200:]}")
    sent, per_second = int(summaries[-1].group(1)), float(summaries[-1].group(2))
    return Rate(sent, sent / per_second, sent * record_size)


def consumer_performance(bootstrap: str, topic: str, messages: int, group: str) -> Rate:
    """Run Kafka's ConsumerPerformance over a topic and return its rate (fetch time only,
    as the tool reports it after the group has joined)."""
    output = run_kafka_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(messages),
        "--group", group, "--timeout", "60000", "--hide-header",
    )  # fmt: skip
    # start.time, end.time, MB, MB.sec, nMsg, nMsg.sec, rebalance.ms, fetch.ms, fetch.MB.sec, ...
    fields = [f.strip() for f in output.strip().splitlines()[-1].split(",")]
    try:
        megabytes, count, fetch_ms = float(fields[2]), int(fields[4]), float(fields[7])
    except (IndexError, ValueError) as error:
        raise EcomError(f"could not read ConsumerPerformance's summary: {output[-200:]}") from error
    return Rate(count, fetch_ms / 1000, int(megabytes * 1024 * 1024))
