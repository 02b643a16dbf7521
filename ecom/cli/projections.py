"""`ecom projections` and `ecom replay`: run the read side, and rebuild it from the log."""

from __future__ import annotations

import click

from consumers.projections import PROJECTIONS, by_names
from consumers.queries import QueryView
from consumers.store import open_store
from consumers.workers import run_workers
from ecom import metrics
from ecom.cli.context import context
from ecom.cli.output import bootstrap_option, echo_table, store_option
from ecom.errors import BadInput
from ecom.kafka import use_service

METRICS_PORT = 9400


@click.group()
def projections() -> None:
    """Build the query view from the event log."""


@projections.command(name="run")
@click.argument("names", nargs=-1)
@click.option("--metrics-port", type=click.IntRange(0, 65535), envvar="ECOM_METRICS_PORT",
              default=METRICS_PORT, show_default=True,
              help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: off).")  # fmt: skip
@store_option
@bootstrap_option
def run_command(names: tuple[str, ...], metrics_port: int, store_url: str | None,
                bootstrap: str | None) -> None:  # fmt: skip
    """Run projections (all, or the NAMES given) until SIGTERM / Ctrl-C."""
    from consumers.health import readiness

    use_service("projections")
    ctx = context(bootstrap, store_url)
    chosen = by_names(list(names))
    health_store = open_store(ctx.store_url)
    wanted = {p.name for p in chosen}
    metrics.serve(metrics_port, lambda: readiness(health_store, ctx.settings, wanted))
    run_workers(chosen, ctx.store_url, ctx.topology, ctx.bootstrap, click.echo)


@projections.command(name="list")
@store_option
def list_command(store_url: str | None) -> None:
    """Show each projection's generation, lag and newest event time."""
    store = open_store(context(store=store_url).store_url, create=False)  # only reads
    health = QueryView(store).health()["projections"]
    rows = []
    for name, projection in PROJECTIONS.items():
        info = health.get(name, {})
        rows.append(
            (
                name,
                ",".join(projection.topics),
                info.get("generation") or "-",
                info.get("lag") if info.get("lag") is not None else "-",
                info.get("event_time") or "-",
            )
        )
    echo_table(["projection", "topics", "generation", "lag", "newest event"], rows)


@click.command()
@click.argument("name", type=click.Choice(sorted(PROJECTIONS)))
@click.option("--until", metavar="OFFSET|DATETIME",
              help="Stop there in every partition and keep the result beside the live view "
              "(a view of the past; no switch).")  # fmt: skip
@click.option("--resume", is_flag=True, help="Carry on with an interrupted replay.")
@click.option("--drop", is_flag=True, help="Throw an interrupted replay away.")
@click.option("--gc", is_flag=True,
              help="Drop every retired generation (views of the past stay).")  # fmt: skip
@store_option
@bootstrap_option
def replay(name: str, until: str | None, resume: bool, drop: bool, gc: bool,
           store_url: str | None, bootstrap: str | None) -> None:  # fmt: skip
    """Rebuild projection NAME from the log into a new generation, then switch to it.

    After the switch, retired generations beyond the newest ECOM_KEEP_GENERATIONS
    (default 1) are dropped."""
    from consumers.replay import GRACE_S, RETIRED, Replay, drop_retired, parse_until

    chosen = [flag for flag, on in (("--resume", resume), ("--drop", drop), ("--gc", gc)) if on]
    if len(chosen) > 1:
        raise BadInput(f"{chosen[0]} and {chosen[1]} cannot be combined: choose one")
    if until is not None and (drop or gc):
        raise BadInput(f"--until does not go with {chosen[0]}: it only bounds a replay")
    parse_until(until)  # a bad --until fails before the view database is opened
    use_service("replay")
    ctx = context(bootstrap, store_url)
    with open_store(ctx.store_url) as store, store.replay_lock(name):
        if gc:
            dropped = drop_retired(store, PROJECTIONS[name], keep=0)
            click.echo(f"dropped {len(dropped)} retired generation(s) of {name}: {dropped}")
            kept = [g.generation for g in store.generations(name) if g.state == RETIRED]
            if kept:
                click.echo(f"kept generation {kept[-1]}: retired by a switch less than "
                           f"{GRACE_S:.0f}s ago, live runners may still write to it")  # fmt: skip
            return
        job = Replay(PROJECTIONS[name], store, ctx.topology, ctx.bootstrap, click.echo)
        if drop:
            click.echo(f"dropped the interrupted replay of {name} (generation {job.drop()})")
            return
        outcome = job.run(until, resume)
    rate = outcome.events / outcome.seconds if outcome.seconds else 0.0
    click.echo(
        f"replayed {outcome.events} events into generation {outcome.generation} in "
        f"{outcome.seconds:.1f}s ({rate:,.0f} events/s), checksum {outcome.checksum[:16]}"
    )
    if until is not None:
        click.echo(
            f"generation {outcome.generation} holds {name} as of {until} (queries still read "
            f"the live one): ecom query --generation {name}={outcome.generation} ..."
        )
    else:
        click.echo(f"the view now reads generation {outcome.generation} "
                   f"(was {outcome.switched_from})")  # fmt: skip
