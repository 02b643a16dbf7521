"""`ecom worker`: run the order flow's stream processors."""

from __future__ import annotations

import threading

import click

from ecom.cli.context import context
from ecom.cli.output import bootstrap_option
from ecom.kafka import use_service
from ecom.process import Spec, Supervisor, on_signals
from ecom.topology import FLOW_SERVICES as SERVICES


@click.command()
@click.argument("name", type=click.Choice([*SERVICES, "all"]))
@bootstrap_option
@click.option("-v", "--verbose", is_flag=True, help="faust's own logs.")
def worker(name: str, bootstrap: str | None, verbose: bool) -> None:
    """Run one order-flow worker until SIGTERM; `all` runs the four, each in its own
    process, restarting one that dies (and giving up, naming it, if it keeps dying)."""
    ctx = context(bootstrap)
    if name == "all":
        _run_all(ctx.bootstrap, verbose)
        return
    from streams.worker import run

    use_service(name)

    run(name, ctx.topology, ctx.bootstrap, ctx.settings, verbose)


def _run_all(bootstrap: str, verbose: bool) -> None:
    stopping = threading.Event()
    with Supervisor(click.echo) as supervisor, on_signals(stopping.set):
        for service in SERVICES:
            args = ("worker", service, "--bootstrap", bootstrap, *(["-v"] if verbose else []))
            supervisor.start(Spec(service, args, inherit=True))
        pids = ", ".join(f"{n} {c.pid}" for n, c in supervisor.running.items())
        click.echo(f"running workers (pids: {pids}); SIGTERM or Ctrl-C stops them")
        while not stopping.wait(0.2):
            supervisor.check()
    click.echo("stopped the workers")
