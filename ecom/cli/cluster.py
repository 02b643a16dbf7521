"""`ecom cluster`: the local KRaft cluster."""

from __future__ import annotations

from pathlib import Path

import click

from ecom.cli.output import echo_table
from ecom.cluster import LocalCluster, kafka_version
from ecom.kafka.security import SERVICES
from ecom.settings import get_settings


def _local() -> LocalCluster:
    return LocalCluster.from_settings(get_settings())


@click.group()
def cluster() -> None:
    """Run Apache Kafka locally: KRaft nodes on loopback, no Docker needed."""


@cluster.command()
@click.option("--brokers", type=click.Choice(["1", "3"]), help="Node count (default 3).")
@click.option("--insecure", is_flag=True,
              help="Plaintext, no authentication, no ACLs: quick experiments only.")  # fmt: skip
def up(brokers: str | None, insecure: bool) -> None:
    """Start the cluster (fetching jars and formatting storage the first time).

    By default the cluster is secure: TLS with a private CA, SCRAM-SHA-512 users (one
    per service) and ACLs; `ecom cluster credentials SERVICE` shows a service's settings.
    """
    local = _local()
    local.up(int(brokers) if brokers else None, report=click.echo, insecure=insecure)
    click.echo(f"bootstrap servers: {local.bootstrap_servers()}")
    if local.is_secure():
        click.echo(
            "secure: SASL_SSL (SCRAM-SHA-512, TLS with the CA in "
            f"{local.tls_dir / 'ca.pem'}), ACLs on; credentials: `ecom cluster credentials`"
        )
    else:
        click.echo("INSECURE: plaintext, no authentication, no ACLs (--insecure)")


@cluster.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--java", is_flag=True,
              help="Java client properties (for Kafka's tools' --command-config).")  # fmt: skip
def credentials(service: str, java: bool) -> None:
    """Print one service's client settings as properties (librdkafka's, usable with
    `kcat -F`, or Java's with --java). They hold a password: keep the output private."""
    local = _local()
    security = local.credentials(service)
    settings = {"bootstrap.servers": local.bootstrap_servers()}
    settings |= security.java() if java else security.librdkafka()
    click.echo("".join(f"{key}={value}\n" for key, value in settings.items()), nl=False)


@cluster.command(name="compose-secrets")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.argument("ca_key", type=click.Path(file_okay=False, path_type=Path))
def compose_secrets(out: Path, ca_key: Path) -> None:
    """Make docker-compose.yml's certificates, SCRAM passwords and node settings in OUT,
    the CA's key in CA_KEY (its `secrets` service runs this; what exists is kept)."""
    from ecom.cluster.compose import write_compose_secrets

    write_compose_secrets(out, ca_key)
    click.echo(f"secrets for docker-compose.yml in {out}")


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
