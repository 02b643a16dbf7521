"""`ecom notifications`: the confirmation mail work queue (a share group)."""

from __future__ import annotations

import threading

import click

from ecom.cli.context import context
from ecom.cli.output import bootstrap_option
from ecom.kafka import Admin, use_service
from ecom.process import on_signals


@click.group()
def notifications() -> None:
    """Send a mail for every confirmed order, from a share group of workers."""


@notifications.command(name="run")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Members of the share group (more than the topic's partitions is fine).",
)
@click.option(
    "--max-deliveries",
    type=click.IntRange(1, 9),
    default=3,
    show_default=True,
    help="Deliveries of one record before it goes to the dead letters.",
)
@click.option(
    "--lock-s",
    type=click.IntRange(1, 60),
    default=30,
    show_default=True,
    help="How long a worker holds a record before it goes back to the group.",
)
@bootstrap_option
def run_command(workers: int, max_deliveries: int, lock_s: int, bootstrap: str | None) -> None:
    """Run the workers until SIGTERM / Ctrl-C."""
    from consumers.notifications import Crew, Mailer, Outbox, QueueSettings, run

    use_service("notifications")
    ctx = context(bootstrap)
    topology, settings = ctx.topology, ctx.settings
    group = topology.notifications_group()
    stop = threading.Event()
    queue = QueueSettings(workers, max_deliveries, lock_s * 1000)
    mailer = Mailer(settings.mail_latency_ms, settings.mail_failure_share)
    outbox = Outbox(settings.mail_outbox_path)
    # Unreachable, refused, a topic missing: said in a second or two, not after the
    # share group's configuration has retried for a minute.
    Admin(ctx.bootstrap).require_topics(topology.topics_of("notifications"))
    click.echo(f"{workers} workers in share group {group}; SIGTERM or Ctrl-C stops them")
    with on_signals(stop.set):
        tally = run(
            Crew(ctx.bootstrap, group, topology.topic("orders").name,
                 topology.dead_letters("notifications").name, queue, mailer, outbox, stop)
        )  # fmt: skip
    click.echo(
        f"stopped: {tally.sent} mails sent, {tally.released} released for another try, "
        f"{tally.dead} to the dead letters, {tally.duplicates} already sent"
    )
