"""`ecom compare`: the course's arguments, as runs that print numbers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecom.cli.context import context
from ecom.cli.output import PORT, FiniteRange, bootstrap_option
from ecom.errors import BadInput
from ecom.kafka import Admin

SCENARIO_NAMES = ("normal", "payment-slow", "payment-down", "inventory-restart")


@click.group()
def compare() -> None:
    """Run the same shop through two designs and print them side by side."""


@compare.command("sync-async")
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(SCENARIO_NAMES),
              help="Run only these (repeatable; default: all four).")  # fmt: skip
@click.option("--rate", type=FiniteRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Orders offered per second, to both designs.")  # fmt: skip
@click.option("--seconds", type=FiniteRange(min=4), default=60.0, show_default=True,
              help="How long orders are offered, per scenario and design.")  # fmt: skip
@click.option("--down-s", type=FiniteRange(min=1), default=30.0, show_default=True,
              help="payment-down: how long the payment service is down.")  # fmt: skip
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the rows as a PNG here (needs matplotlib).")  # fmt: skip
@bootstrap_option
def sync_async(scenarios: tuple[str, ...], rate: float, seconds: float, down_s: float,
               seed: int, as_json: bool, chart: Path | None,
               bootstrap: str | None) -> None:  # fmt: skip
    """The synchronous HTTP chain beside the event flow: accepted, rejected, completed,
    lost, latency and recovery, when nothing fails, when payment is slow or down, and
    when inventory restarts."""
    from bench import compare as runs

    wanted = list(scenarios or SCENARIO_NAMES)
    if "payment-down" in wanted and down_s >= seconds * 0.75:
        raise BadInput(
            f"--down-s {down_s:g} does not fit in --seconds {seconds:g}: the outage starts "
            "a quarter in and must end before the run does"
        )
    setup = runs.Setup(rate, seconds, down_s, seed)
    if setup.orders > runs.MAX_ORDERS:
        raise BadInput(f"--rate {rate:g} for --seconds {seconds:g} offers {setup.orders:,} "
                       f"orders per run; at most {runs.MAX_ORDERS:,}")  # fmt: skip
    if chart is not None:
        runs.check_charts(chart)
    ctx = context(bootstrap)
    Admin(ctx.bootstrap).metadata()  # Kafka unreachable: said now, not after the chain's run
    home = ctx.settings.home / ".ecom" / "compare"
    report = (lambda _: None) if as_json else click.echo
    topics = ctx.settings.topics_path
    rows = runs.compare(wanted, setup, ctx.topology, ctx.bootstrap, home, topics, report)
    click.echo(runs.as_json(rows) if as_json else "\n" + runs.table(rows))
    if chart is not None:
        runs.chart(rows, chart)
        if not as_json:
            click.echo(f"chart: {chart}")


@compare.command("chain-service", hidden=True)
@click.argument("service", type=click.Choice(["inventory", "pricing", "payment", "orders"]))
@click.option("--port", type=PORT, required=True)
@click.option("--seed", type=int, required=True)
@click.option("--urls", required=True, help="JSON: service -> base URL.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the service's SQLite files.")  # fmt: skip
def chain_service(service: str, port: int, seed: int, urls: str, data: Path) -> None:
    """One service of the synchronous chain (`sync-async` starts them)."""
    import uvicorn

    from bench.compare import Setup, reference_and_orders
    from chain.services import build

    ctx = context()
    reference, _, _ = reference_and_orders(Setup(1, 4, 1, seed))
    app = build(service, reference, data, ctx.settings, json.loads(urls))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@compare.command("queue-log")
@click.option("--check", "checks", multiple=True,
              type=click.Choice(["throughput", "crash", "replay"]),
              help="Run only these (repeatable; default: all three).")  # fmt: skip
@click.option("--records", type=click.IntRange(10, 1_000_000), default=2000, show_default=True,
              help="Jobs per run.")  # fmt: skip
@click.option("--partitions", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--work-ms", type=FiniteRange(0, 1000), default=5.0, show_default=True,
              help="How long one job takes a worker.")  # fmt: skip
@click.option("--workers", default="1,2,4,8", show_default=True,
              help="Worker counts for the throughput check, comma-separated.")  # fmt: skip
@click.option("--failover-s", type=click.IntRange(6, 60), default=10, show_default=True,
              help="crash: the consumers' session timeout and the share group's record "
                   "lock time.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@bootstrap_option
def queue_log(checks: tuple[str, ...], records: int, partitions: int, work_ms: float,
              workers: str, failover_s: int, as_json: bool,
              bootstrap: str | None) -> None:  # fmt: skip
    """The same jobs through a consumer group and a share group: throughput with more
    workers than partitions, a worker killed before it commits, and what replay means."""
    from bench import queue_log as runs

    counts = _counts(workers)
    wanted = list(checks or ("throughput", "crash", "replay"))
    sizes = [1]  # the workers each chosen check runs at once (replay: one)
    if "throughput" in wanted:
        sizes += counts
    if "crash" in wanted:
        sizes.append(runs.Setup.crash_workers)
    most = max(sizes)
    if records < most * runs.Setup.batch:
        raise BadInput(
            f"--records {records} is too few for {most} workers: each takes "
            f"{runs.Setup.batch} at a time; give at least {most * runs.Setup.batch}"
        )
    ctx = context(bootstrap)
    setup = runs.Setup(records, partitions, work_ms, counts,
                       crash_after=max(1, min(100, records // 10)),
                       failover_s=failover_s)  # fmt: skip
    report = (lambda _: None) if as_json else click.echo
    home = ctx.settings.home / ".ecom" / "compare"
    rows = runs.compare(setup, ctx.bootstrap, home, wanted, report)
    click.echo(runs.as_json(rows) if as_json else "\n" + runs.table(rows))


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or max(counts) > 32:
        raise BadInput(f"--workers wants counts from 1 to 32 separated by commas, not {text!r}")
    return counts


@compare.command("queue-worker", hidden=True)
@click.argument("design", type=click.Choice(["group", "share"]))
@click.option("--topic", required=True)
@click.option("--group", required=True)
@click.option("--work-ms", type=FiniteRange(0), required=True)
@click.option("--batch", type=int, required=True)
@click.option("--folder", type=click.Path(path_type=Path), required=True)
@click.option("--name", required=True)
@click.option("--session-ms", type=int, required=True)
@click.option("--crash-after", type=int)
@bootstrap_option
def queue_worker(design: str, topic: str, group: str, work_ms: float, batch: int,
                 folder: Path, name: str, session_ms: int, crash_after: int | None,
                 bootstrap: str | None) -> None:  # fmt: skip
    """One worker of `compare queue-log` (a child process)."""
    from bench import queue_log as runs

    ctx = context(bootstrap)
    kind: runs.Design = "group" if design == "group" else "share"
    spec = runs.WorkerSpec(kind, topic, group, work_ms, batch, folder, name, session_ms,
                           crash_after)  # fmt: skip
    runs.work(spec, ctx.bootstrap)
