"""Benchmark plumbing: Kafka's own perf tools, run from the local cluster's jars.

Benchmarks run beside Kafka's ProducerPerformance / ConsumerPerformance on the same
cluster and topic settings, and print both figures and their ratio.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ecom.cluster import LocalCluster
from ecom.errors import EcomError, ProcessFailed
from ecom.kafka import security_for
from ecom.settings import get_settings


def run_kafka_tool(main_class: str, *args: str, timeout: float = 900,
                   measuring: bool = False) -> str:  # fmt: skip
    """Run one of Kafka's Java tools from the local cluster's jars (measuring: a perf
    tool, run with the JVM's defaults)."""
    cluster = LocalCluster.from_settings(get_settings())
    return cluster.run_tool(main_class, *args, timeout=timeout, measuring=measuring)


def client_properties(bootstrap: str, flag: str) -> list[str]:
    """The tool option naming a properties file with this process's security settings
    (written private: it holds a password), or nothing on a plaintext cluster."""
    security = security_for(bootstrap)
    if security.protocol == "PLAINTEXT":
        return []
    path = get_settings().home / ".ecom" / "bench-client.properties"
    security.write_java(path)
    return [flag, str(path)]


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


@dataclass(frozen=True)
class Payloads:
    """Records for ProducerPerformance to send instead of random letters: a file of
    payloads, one per line, and how many distinct integer keys to draw for them."""

    path: Path
    keys: int

    def options(self) -> list[str]:
        return ["--payload-file", str(self.path), "--key-distribution", "random",
                "--record-key-range", str(self.keys)]  # fmt: skip


def producer_performance(
    bootstrap: str,
    topic: str,
    records: int,
    record_size: int,
    props: dict[str, str],
    throughput: float = -1,
    payloads: Payloads | None = None,
) -> Rate:
    """Run Kafka's ProducerPerformance and return its overall rate (throughput: records
    per second it paces itself to; -1, as fast as it can). Without payloads it sends
    unkeyed records of random letters, record_size bytes each."""
    what = payloads.options() if payloads else ["--record-size", str(record_size)]
    output = run_kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(records), *what,
        "--throughput", f"{throughput:g}", *client_properties(bootstrap, "--producer.config"),
        "--producer-props", f"bootstrap.servers={bootstrap}",
        *(f"{k}={v}" for k, v in props.items()),
        measuring=True,
    )  # fmt: skip
    summaries = list(_PRODUCER_SUMMARY.finditer(output))
    if not summaries:
        raise EcomError(f"could not read ProducerPerformance's summary: {output[-200:]}")
    sent, per_second = int(summaries[-1].group(1)), float(summaries[-1].group(2))
    return Rate(sent, sent / per_second, sent * record_size)


def consumer_performance(bootstrap: str, topics: str | list[str], messages: int, group: str
                         ) -> Rate:  # fmt: skip
    """Run Kafka's ConsumerPerformance over a topic (or several, in one consumer) and
    return its rate (fetch time only, as the tool reports it after the group has joined)."""
    if isinstance(topics, str):
        which = ["--topic", topics]
    else:
        which = ["--include", "^(" + "|".join(re.escape(topic) for topic in topics) + ")$"]
    output = run_kafka_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server", bootstrap, *which, "--messages", str(messages),
        "--group", group, "--timeout", "60000", "--hide-header",
        *client_properties(bootstrap, "--consumer.config"),
        measuring=True,
    )  # fmt: skip
    # start.time, end.time, MB, MB.sec, nMsg, nMsg.sec, rebalance.ms, fetch.ms, fetch.MB.sec, ...
    fields = [f.strip() for f in output.strip().splitlines()[-1].split(",")]
    try:
        megabytes, count, fetch_ms = float(fields[2]), int(fields[4]), float(fields[7])
    except (IndexError, ValueError) as error:
        raise EcomError(f"could not read ConsumerPerformance's summary: {output[-200:]}") from error
    return Rate(count, fetch_ms / 1000, int(megabytes * 1024 * 1024))


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def children_cpu_seconds() -> float:
    """Return the CPU time this process's finished children have used so far (a Java
    tool run to the end is one)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent by named processes between start() and stop()."""

    def __init__(self) -> None:
        self._start: dict[str, tuple[int, float]] = {}
        self.spent: dict[str, float] = {}

    def start(self, pids: dict[str, int]) -> None:
        self._start = {name: (pid, cpu_seconds(pid)) for name, pid in pids.items()}

    def stop(self) -> dict[str, float]:
        self.spent = {
            name: max(0.0, cpu_seconds(pid) - before) for name, (pid, before) in self._start.items()
        }
        return self.spent

    def line(self, wall: float) -> str:
        """`where the CPU went`: seconds per process and their sum, beside the wall time."""
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in self.spent.items())
        total = sum(self.spent.values())
        return f"CPU seconds over {wall:.1f}s of wall time: {parts}; total {total:.1f}"


def child_pids(pid: int) -> list[int]:
    """The pids of a process's living children (Linux: /proc), in pid order."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return sorted(found)


def local_brokers() -> dict[str, int]:
    """The pids of the local cluster's nodes (none when the cluster is not ours)."""
    local = LocalCluster.from_settings(get_settings())
    return {f"broker-{node.node_id}": pid for node in local.nodes() if (pid := node.pid())}


def percentile(sorted_values: list[float], share: float) -> float:
    """The value below which `share` of the sorted values fall (nearest rank)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> None:
    """Poll condition until it holds; ProcessFailed (one line) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ProcessFailed(f"timed out waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A loopback port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
