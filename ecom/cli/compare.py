"""`ecom compare`: the course's arguments, as runs that print numbers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecom.cli.context import context
from ecom.cli.output import bootstrap_option
from ecom.errors import BadInput

SCENARIO_NAMES = ("normal", "payment-slow", "payment-down", "inventory-restart")


@click.group()
def compare() -> None:
    """Run the same shop through two designs and print them side by side."""


@compare.command("sync-async")
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(SCENARIO_NAMES),
              help="Run only these (repeatable; default: all four).")  # fmt: skip
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Orders offered per second, to both designs.")  # fmt: skip
@click.option("--seconds", type=click.FloatRange(min=4), default=60.0, show_default=True,
              help="How long orders are offered, per scenario and design.")  # fmt: skip
@click.option("--down-s", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="payment-down: how long the payment service is down.")  # fmt: skip
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@bootstrap_option
def sync_async(scenarios: tuple[str, ...], rate: float, seconds: float, down_s: float,
               seed: int, as_json: bool, bootstrap: str | None) -> None:  # fmt: skip
    """The synchronous HTTP chain beside the event flow: accepted, rejected, completed,
    lost, latency and recovery, when nothing fails, when payment is slow or down, and
    when inventory restarts."""
    from bench import compare as runs

    if down_s >= seconds * 0.75:
        raise BadInput(
            f"--down-s {down_s:g} does not fit in --seconds {seconds:g}: the outage starts "
            "a quarter in and must end before the run does"
        )
    ctx = context(bootstrap)
    setup = runs.Setup(rate, seconds, down_s, seed)
    home = ctx.settings.home / ".ecom" / "compare"
    report = (lambda _: None) if as_json else click.echo
    wanted = list(scenarios or SCENARIO_NAMES)
    topics = ctx.settings.topics_path
    rows = runs.compare(wanted, setup, ctx.topology, ctx.bootstrap, home, topics, report)
    click.echo(runs.as_json(rows) if as_json else "\n" + runs.table(rows))


@compare.command("chain-service", hidden=True)
@click.argument("service", type=click.Choice(["inventory", "pricing", "payment", "orders"]))
@click.option("--port", type=int, required=True)
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
