"""The benchmarks run and print their figures (speed itself is never asserted in tests)."""

from __future__ import annotations

import re

import pytest

from tests.support import run_cli

pytestmark = pytest.mark.kafka


def test_bench_produce_prints_both_rates_and_the_ratio(cli_env: dict[str, str]) -> None:
    result = run_cli("bench", "produce", "--events", "5000", env=cli_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  [\d,]+ events/s \([\d.]+ MB/s\)$", result.stdout, re.M)
    assert re.search(r"^  [\d,]+ records/s \([\d.]+ MB/s\)$", result.stdout, re.M)
    ratio = r"^ratio ours / ProducerPerformance: \d+\.\d\d \(both keyed"
    assert re.search(ratio, result.stdout, re.M)
    assert re.search(r"our records as payloads \(mean \d+ B .*\), [\d,]+ keys", result.stdout)
    cpu = re.findall(r"^  CPU seconds over .*", result.stdout, re.M)
    assert len(cpu) == 2, result.stdout
    assert "broker-1" in cpu[0], "where our run's CPU went: the brokers"
    assert "ours" in cpu[0], "where our run's CPU went: our process"
    assert re.search(r"ProducerPerformance (?!0\.0)\d+\.\d", cpu[1]), "the tool's JVM used CPU"


def test_bench_query_prints_apply_rates_and_read_latencies(cli_env: dict[str, str]) -> None:
    result = run_cli(
        "bench", "query", "--orders", "300", "--reads", "200", "--clients", "2", "--load-s", "1",
        "--api-workers", "2", env=cli_env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rates = re.findall(r"^(\w+): applied [\d,]+ events .* ratio (\d+\.\d+)$", result.stdout, re.M)
    assert [name for name, _ in rates] == ["inventory", "orders"]
    latencies = re.findall(
        r"^  (order|product|stock) +in-process +[\d.]+ / +[\d.]+ +HTTP", result.stdout, re.M
    )
    assert latencies == ["order", "product", "stock"] * 2
    load = re.search(
        r"^load over HTTP, 2 clients, 2 API processes, 1s: ([\d,]+) requests = [\d,]+ requests/s, "
        r"p50 [\d.]+ ms, p99 [\d.]+ ms \(goal .*: (NOT )?reached\)$",
        result.stdout,
        re.M,
    )
    assert load, result.stdout
    assert int(load.group(1).replace(",", "")) > 0
    cpu = r"^  CPU seconds over .*: query API 1 [\d.]+, query API 2 [\d.]+, clients [\d.]+; total"
    assert re.search(cpu, result.stdout, re.M), result.stdout


def test_bench_replay_prints_start_to_switch_and_the_ratio(cli_env: dict[str, str]) -> None:
    result = run_cli("bench", "replay", "--events", "8000", env=cli_env, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^published 8,000 events \([\d,]+ distinct keys\) in [\d.]+s", out, re.M)
    views = re.findall(r"^  (\w+) +[\d,]+ records, start to switch +[\d.]+s = +[\d,]+/s "
                       r"in 1 process\(es\); checksum [\d.]+s$", out, re.M)  # fmt: skip
    assert sorted(views) == ["catalogue", "inventory", "orders", "pricing"], out
    orders = re.search(r"^  orders +([\d,]+) records", out, re.M)
    assert orders, out
    assert int(orders[1].replace(",", "")) > 1000, out  # a small run has orders too
    assert re.search(
        r"^replay of every view: [\d,]+ records \([\d,]+ distinct keys\), start to switch "
        r"[\d.]+s = [\d,]+ records/s \(goal 100,000/s: (NOT )?reached\); ConsumerPerformance "
        r"reading the same topics in one consumer: [\d,]+ records/s; ratio \d+\.\d{3}$",
        out,
        re.M,
    ), out
    assert re.search(r"^where the time went \([\d.]+ process-seconds\): decode .*database "
                     r".*kafka\+loop", out, re.M), out  # fmt: skip
    cpu = re.search(r"^CPU seconds over [\d.]+s of wall time: broker-1 .*ours [\d.]+, replay "
                    r"processes [\d.]+; total [\d.]+ \(every replay", out, re.M)  # fmt: skip
    assert cpu, out
