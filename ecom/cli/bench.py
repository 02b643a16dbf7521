"""`ecom bench`: measure ours beside Kafka's own perf tools, on the same cluster."""

from __future__ import annotations

import os

import click

from ecom.cli.context import context
from ecom.cli.output import FiniteRange, bootstrap_option


@click.group()
def bench() -> None:
    """Benchmarks that print our figures, Kafka's, and the ratio."""


@bench.command()
@click.option("--events", type=click.IntRange(1000), default=200_000, show_default=True)
@click.option("--linger-ms", type=click.IntRange(0), help="Override linger.ms.")
@click.option("--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]))
@bootstrap_option
def produce(
    events: int, linger_ms: int | None, compression: str | None, bootstrap: str | None
) -> None:
    """Publish N realistic events through our producer, then run ProducerPerformance."""
    from bench.produce import run

    overrides: dict[str, object] = {}
    if linger_ms is not None:
        overrides["linger.ms"] = linger_ms
    if compression is not None:
        overrides["compression.type"] = compression
    ctx = context(bootstrap)
    run(ctx.topology, ctx.bootstrap, events, click.echo, **overrides)


@bench.command()
@click.option(
    "--orders",
    type=click.IntRange(100),
    default=20_000,
    show_default=True,
    help="Orders per stream (each brings about 5 events).",
)
@click.option("--reads", type=click.IntRange(100), default=5_000, show_default=True)
@click.option("--clients", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Client processes of the HTTP load phase.")  # fmt: skip
@click.option("--load-s", type=FiniteRange(0.5, 300), default=5.0, show_default=True,
              help="Seconds the HTTP load phase lasts.")  # fmt: skip
@click.option("--api-workers", type=click.IntRange(1, 64), default=min(64, os.cpu_count() or 1),
              show_default="one per CPU", help="The query API's processes (serve query "
              "--workers).")  # fmt: skip
@bootstrap_option
def query(orders: int, reads: int, clients: int, load_s: float, api_workers: int,
          bootstrap: str | None) -> None:  # fmt: skip
    """Apply rate beside ConsumerPerformance, point-read latency idle and under load, and
    requests/s of the query API under concurrent clients."""
    from bench.query import Load, run

    ctx = context(bootstrap)
    load = Load(clients, load_s, api_workers)
    run(ctx.topology, ctx.bootstrap, orders, reads, click.echo, load)


@bench.command()
@click.option("--orders", type=click.IntRange(10), default=2_000, show_default=True)
@click.option(
    "--rate",
    type=FiniteRange(0),
    default=100,
    show_default=True,
    help="Orders per second offered; 0 for as fast as possible (capacity).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@bootstrap_option
def flow(orders: int, rate: float, as_json: bool, bootstrap: str | None) -> None:
    """Drive orders through the four workers: rate offered and achieved, latency to the
    final state, and the CPU seconds of every process."""
    from bench.flow import run

    ctx = context(bootstrap)
    run(ctx.topology, ctx.bootstrap, orders, rate, click.echo, as_json)


@bench.command()
@click.option("--events", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--processes", type=click.IntRange(1), default=min(64, os.cpu_count() or 1),
              show_default="one per CPU",
              help="Processes a replay of 50,000 records or more folds in.")  # fmt: skip
@click.option("--store", "store_url",
              help="A view database holding no view yet (default: a scratch SQLite, deleted "
                   "after).")  # fmt: skip
@bootstrap_option
def replay(events: int, processes: int, store_url: str | None, bootstrap: str | None) -> None:
    """Replay every view from N events of the shop's mix, start to switch, beside
    ConsumerPerformance on the same topics (into a scratch SQLite view unless --store,
    which must hold no view yet)."""
    from bench.replay import run

    ctx = context(bootstrap)
    run(ctx.topology, ctx.bootstrap, events, click.echo, store_url, processes)
