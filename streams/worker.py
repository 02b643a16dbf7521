"""Run one order-flow worker: `ecom worker inventory|pricing|payment|order`.

One service per process, a faust app each (`ecom worker all`, in the CLI, supervises
the four as child processes).
"""

from __future__ import annotations

import logging

import faust

from ecom.errors import BadInput
from ecom.settings import Settings
from ecom.topology import FLOW_SERVICES as SERVICES
from ecom.topology import Topology
from streams import inventory, order, payment, pricing
from streams.flow import Flow, make_app, restart_process
from streams.payment import Gateway
from streams.reference import Reference

LOG = logging.getLogger("ecom.streams")


def build(service: str, topology: Topology, bootstrap: str, settings: Settings) -> faust.App:
    """Return the faust app of one service, with its agents registered."""
    if service not in SERVICES:
        raise BadInput(f"unknown worker {service!r}; choose one of {', '.join(SERVICES)} or all")
    app = make_app(service, topology, bootstrap, settings)
    flow = Flow(app, topology, service, bootstrap)
    if service == "inventory":
        inventory.register(app, flow)
    elif service == "pricing":
        pricing.register(app, flow, Reference(topology, bootstrap))
    elif service == "payment":
        gateway = Gateway(settings.gateway_decline_share, settings.gateway_latency_ms)
        payment.register(app, flow, gateway)
    else:
        order.register(app, flow, settings.payment_timeout_s)
    return app


def run(
    service: str, topology: Topology, bootstrap: str, settings: Settings, verbose: bool
) -> None:
    """Run one service until SIGTERM / SIGINT."""
    app = build(service, topology, bootstrap, settings)
    logging.getLogger("faust.tables.recovery").addHandler(RecoveryWatchdog())
    worker = Worker(app, loglevel="INFO" if verbose else "WARNING", quiet=not verbose)
    worker.execute_from_commandline()


class Worker(faust.Worker):
    """faust's worker, without its terminal spinner (our logs go to files too)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


class RecoveryWatchdog(logging.Handler):
    """Restart the worker when faust's table recovery goes wrong.

    Started while a broker is down, faust-streaming can resume the live stream before
    its table recovery is done, and then feeds source records to the recovery loop
    ("Error in recovery": Avro bytes read as changelog JSON). Those records never reach
    the agent, its commits stop at the gap and the flow stalls. A fresh start is the way
    out, and at-least-once delivery makes it safe: nothing past the last commit is lost.
    The worker replaces itself with a new process (same pid, same static membership).
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Error in recovery"):
            LOG.error(
                "faust table recovery failed (%s); restarting the worker", record.getMessage()
            )
            restart_process()
