"""`ecom cluster`: the local KRaft cluster."""

from __future__ import annotations

import click

from ecom.cli.output import echo_table
from ecom.cluster import LocalCluster, kafka_version
from ecom.settings import get_settings


def _local() -> LocalCluster:
    return LocalCluster.from_settings(get_settings())


@click.group()
def cluster() -> None:
    """Run Apache Kafka locally: KRaft nodes on loopback, no Docker needed."""


@cluster.command()
@click.option("--brokers", type=click.Choice(["1", "3"]), help="Node count (default 3).")
def up(brokers: str | None) -> None:
    """Start the cluster (fetching jars and formatting storage the first time)."""
    _local().up(int(brokers) if brokers else None, report=click.echo)
    click.echo(f"bootstrap servers: {_local().bootstrap_servers()}")


@cluster.command()
def fetch() -> None:
    """Download Kafka's jars with Maven (`up` does this when they are missing)."""
    local = _local()
    local.fetch_jars()
    click.echo(f"Kafka {kafka_version()} jars in {local.lib_dir}")


@cluster.command()
@click.option("--wipe", is_flag=True, help="Also delete the cluster's data.")
def down(wipe: bool) -> None:
    """Stop every node (data is kept unless --wipe)."""
    _local().down(wipe=wipe, report=click.echo)


@cluster.command()
@click.argument("node_id", type=int)
def kill(node_id: int) -> None:
    """SIGKILL one node, as a crash would (for fault tests)."""
    pid = _local().kill(node_id)
    click.echo(f"killed node {node_id} (pid {pid})")


@cluster.command()
@click.argument("node_id", type=int)
def start(node_id: int) -> None:
    """Start one stopped node and wait until it has rejoined."""
    _local().start(node_id, report=click.echo)


@cluster.command()
def status() -> None:
    """Show each node: pid, ports, alive, registered with the cluster."""
    local = _local()
    nodes = local.status()
    if not nodes:
        click.echo(f"no local cluster in {local.root}; start one with `ecom cluster up`")
        return
    click.echo(f"Kafka {kafka_version()} in {local.root}")
    rows = [
        (
            n.node_id,
            n.pid or "-",
            n.broker_port,
            n.controller_port,
            "alive" if n.pid else "stopped",
            "yes" if n.registered else "no",
        )
        for n in nodes
    ]
    echo_table(["node", "pid", "broker", "controller", "process", "registered"], rows)
    click.echo(f"bootstrap servers: {local.bootstrap_servers()}")
