"""`ecom topics`: make the cluster's topics match topics.yaml."""

from __future__ import annotations

from pathlib import Path

import click

from ecom.cli.context import context
from ecom.cli.output import bootstrap_option, echo_table
from ecom.errors import PlanRefused
from ecom.kafka import TopicAdmin
from ecom.topics_plan import Plan
from ecom.topology import Topology

file_option = click.option(
    "--file", "path", type=click.Path(path_type=Path), help="Topics file (default topics.yaml)."
)
prefix_option = click.option("--prefix", help="Prefix for every topic name (ECOM_TOPIC_PREFIX).")


def load_topology(path: Path | None, prefix: str | None) -> Topology:
    settings = context().settings
    chosen = settings.topic_prefix if prefix is None else prefix
    return Topology.load(path or settings.topics_path, chosen)


@click.group()
def topics() -> None:
    """Declare topics in topics.yaml; apply and inspect them."""


@topics.command()
@bootstrap_option
@file_option
@prefix_option
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@click.option("--dev", is_flag=True, help="Cap replication to the broker count (laptops).")
def apply(
    bootstrap: str | None, path: Path | None, prefix: str | None, dry_run: bool, dev: bool
) -> None:
    """Create missing topics, add partitions, align configs, grant the services' ACLs
    (on a cluster with an authorizer); refuse the impossible."""
    topology = load_topology(path, prefix)
    admin = TopicAdmin(context(bootstrap).bootstrap)
    plan = admin.plan(topology, dev)
    if plan.refusals:
        more = len(plan.refusals) - 1
        also = f"; and {more} more refusal(s) like it" if more else ""
        raise PlanRefused(f"{plan.refusals[0]}{also} (nothing was changed)")
    _print_plan(plan)
    if plan.is_empty:
        click.echo("no changes: the cluster matches topics.yaml")
        return
    if dry_run:
        click.echo("dry run: nothing was changed")
        return
    admin.execute(plan)
    click.echo(f"applied {len(plan.changes)} change(s)")


def _print_plan(plan: Plan) -> None:
    for note in plan.notes:
        click.echo(f"note: {note}")
    for change in plan.changes:
        click.echo(f"  {change.action:<15} {change.topic}: {change.detail}")


@topics.command()
@bootstrap_option
@file_option
@prefix_option
def describe(bootstrap: str | None, path: Path | None, prefix: str | None) -> None:
    """Show the live state of every topic in topics.yaml."""
    topology = load_topology(path, prefix)
    admin = TopicAdmin(context(bootstrap).bootstrap)
    live = admin.live_topics([t.name for t in topology.topics()])
    rows: list[tuple[object, ...]] = []
    for topic in topology.topics():
        found = live.get(topic.name)
        if found is None:
            rows.append((topic.name, "-", "-", "-", "-", "-", "missing"))
            continue
        rows.append(
            (
                topic.name,
                found.partitions,
                found.replication_factor,
                found.configs.get("min.insync.replicas", "?"),
                found.configs.get("retention.ms", "?"),
                found.configs.get("cleanup.policy", "?"),
                f"{found.under_replicated} under-replicated" if found.under_replicated else "ok",
            )
        )
    headers = ["topic", "partitions", "rf", "min.isr", "retention.ms", "cleanup", "state"]
    echo_table(headers, rows)
