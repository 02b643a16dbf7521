"""The `ecom` command, the project's only face: one root group, one module per command
group. This package (and bench/) may import the wings; nothing below it imports it.

Every command fails the same way: one line on stderr, an exit code from
ecom.errors (2 bad input, 3 Kafka unreachable or delivery failed), no traceback. A
stdout nobody reads any more ends a command quietly with 141, as SIGPIPE ends a tool.
"""

from __future__ import annotations

import errno
import logging
import os
import select
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
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE  # what a shell says of a tool SIGPIPE killed


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
        sys.stdout.flush()  # a reader gone shows here when the last lines were buffered
    except SystemExit as leaving:  # click's exit 1 for EPIPE: its context is the OSError
        _end_if_stdout_closed(leaving.__context__)
        raise
    except OSError as error:
        _end_if_stdout_closed(error)
        raise
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


def _end_if_stdout_closed(error: BaseException | None) -> None:
    """A broken pipe on a stdout whose reader went away (`ecom ... | head -1`) ends the
    command quietly, as it ends a Unix tool, after the clean-up its exception ran."""
    if not (isinstance(error, OSError) and error.errno == errno.EPIPE and _stdout_gone()):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)  # what is still buffered goes nowhere
    os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]
    os.close(devnull)
    sys.exit(EXIT_PIPE_CLOSED)


def _stdout_gone() -> bool:
    """Tell whether stdout is a pipe or socket nobody reads any more (POLLERR, POLLHUP),
    not some other pipe of the command that broke."""
    try:
        poller = select.poll()
        poller.register(sys.__stdout__.fileno(), 0)  # type: ignore[union-attr]
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _interrupted(terminated: bool) -> None:
    click.echo("terminated" if terminated else "interrupted", err=True)
    sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
