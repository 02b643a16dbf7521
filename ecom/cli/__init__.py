"""The `ecom` command, the project's only face: one root group, one module per command
group. This package (and bench/) may import the wings; nothing below it imports it.

Every command fails the same way: one line on stderr, an exit code from
ecom.errors (2 bad input, 3 Kafka unreachable or delivery failed), no traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from ecom.cli.asyncapi import asyncapi
from ecom.cli.bench import bench
from ecom.cli.cluster import cluster
from ecom.cli.compare import compare
from ecom.cli.demo import demo
from ecom.cli.keys import keys
from ecom.cli.notifications import notifications
from ecom.cli.offsets import offsets
from ecom.cli.produce import produce, simulate
from ecom.cli.projections import projections, replay
from ecom.cli.query import query
from ecom.cli.schemas import schemas
from ecom.cli.serve import serve
from ecom.cli.topics import topics
from ecom.cli.worker import worker
from ecom.errors import EcomError
from ecom.process import adopt_parent
from ecom.settings import LOG_FORMAT

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise: the same clean-up runs (scratch topics
    deleted, children stopped). Commands that stop on SIGTERM their own way replace it."""


def _terminate(_: int, __: FrameType | None) -> None:
    raise Terminated


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show client library logs.")
def cli(verbose: bool) -> None:
    """ecomstream: an event-driven shop on Apache Kafka."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=LOG_FORMAT,
    )
    if not verbose:  # its fatal errors (CRITICAL) reach the caller too: they end in one line
        logging.getLogger("ecom.librdkafka").setLevel(logging.CRITICAL + 1)


cli.add_command(cluster)
cli.add_command(topics)
cli.add_command(schemas)
cli.add_command(produce)
cli.add_command(simulate)
cli.add_command(serve)
cli.add_command(keys)
cli.add_command(bench)
cli.add_command(projections)
cli.add_command(query)
cli.add_command(worker)
cli.add_command(offsets)
cli.add_command(replay)
cli.add_command(demo)
cli.add_command(asyncapi)
cli.add_command(compare)
cli.add_command(notifications)


def main() -> None:
    """Run the CLI and turn every expected failure into one line and an exit code."""
    adopt_parent()  # a child of `ecom worker all`, `ecom demo` ...: die with the parent
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort as error:  # click's word for a KeyboardInterrupt
        _interrupted(isinstance(error.__cause__, Terminated))
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except EcomError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt as interrupt:
        _interrupted(isinstance(interrupt, Terminated))
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted(terminated: bool) -> None:
    click.echo("terminated" if terminated else "interrupted", err=True)
    sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
