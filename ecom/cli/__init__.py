"""The `ecom` command: one root group, one sub-group per job.

Every command fails the same way: one line on stderr, an exit code from
ecom.errors (2 bad input, 3 Kafka unreachable or delivery failed), no traceback.
"""

from __future__ import annotations

import logging
import sys

import click

from consumers.cli import projections, query, replay
from ecom.cli.bench import bench
from ecom.cli.cluster import cluster
from ecom.cli.offsets import offsets
from ecom.cli.output import bootstrap_option
from ecom.cli.schemas import schemas
from ecom.cli.serve import serve
from ecom.cli.topics import topics
from ecom.cli.worker import worker
from ecom.errors import EcomError
from ecom.settings import get_settings, resolve_bootstrap
from ecom.topology import Topology
from producers.cli import produce, simulate

EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show client library logs.")
def cli(verbose: bool) -> None:
    """ecomstream: an event-driven shop on Apache Kafka."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("ecom.librdkafka").setLevel(logging.CRITICAL)


cli.add_command(cluster)
cli.add_command(topics)
cli.add_command(schemas)
cli.add_command(produce)
cli.add_command(simulate)
cli.add_command(serve)
cli.add_command(bench)
cli.add_command(projections)
cli.add_command(query)
cli.add_command(worker)
cli.add_command(offsets)
cli.add_command(replay)


@cli.command()
@bootstrap_option
@click.option("--orders", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=100.0,
    show_default=True,
    help="Orders per second.",
)
@click.option("--users", type=click.IntRange(1), default=200, show_default=True)
@click.option("--products", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--stock",
    "max_stock",
    type=click.IntRange(1),
    default=60,
    show_default=True,
    help="At most this many units per product (scarce on purpose).",
)
@click.option("--seed", type=int, help="Same seed, same shop (default: a new one each run).")
@click.option("--exit", "leave", is_flag=True, help="Stop everything after the report.")
def demo(
    bootstrap: str | None, orders: int, rate: float, users: int, products: int,
    max_stock: int, seed: int | None, leave: bool,
) -> None:  # fmt: skip
    """Run the whole shop: workers, projections, both APIs, and simulated customers."""
    import signal

    from ecom.demo import default_seed, run
    from producers.simulate import ShopPlan

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop what we started, as on Ctrl-C
    settings = get_settings()
    topology = Topology.load(settings.topics_path, settings.topic_prefix)
    chosen = seed if seed is not None else default_seed()
    low = max(1, max_stock // 10)
    plan = ShopPlan(
        users, products, orders, chosen, cancel_share=0.1, min_stock=low, max_stock=max_stock
    )
    run(topology, resolve_bootstrap(bootstrap), settings, plan, rate, not leave, click.echo)


def main() -> None:
    """Run the CLI and turn every expected failure into one line and an exit code."""
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except EcomError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
