"""`ecom worker`: run the order flow's stream processors."""

from __future__ import annotations

import click

from ecom.cli.output import bootstrap_option
from ecom.settings import get_settings, resolve_bootstrap
from ecom.topology import Topology


@click.command()
@click.argument("name", type=click.Choice(["inventory", "pricing", "payment", "order", "all"]))
@bootstrap_option
@click.option("-v", "--verbose", is_flag=True, help="faust's own logs.")
def worker(name: str, bootstrap: str | None, verbose: bool) -> None:
    """Run one order-flow worker (or all four, each in its own process) until SIGTERM."""
    from streams.worker import run, run_all

    settings = get_settings()
    servers = resolve_bootstrap(bootstrap)
    if name == "all":
        run_all(servers, click.echo)
        return
    topology = Topology.load(settings.topics_path, settings.topic_prefix)
    run(name, topology, servers, settings, verbose)
