"""Run one order-flow worker: `ecom worker inventory|pricing|payment|order`.

One service per process, a faust app each (`ecom worker all`, in the CLI, supervises
the four as child processes). A worker told to stop (SIGTERM, SIGINT) gets
STOP_DEADLINE_S to finish; faust's shutdown can wait on brokers that are gone, so after
that the process exits anyway (nothing acknowledged is lost: what was not committed is
read again by the next worker).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from datetime import timedelta

import faust

from ecom import faults
from ecom.errors import BadInput
from ecom.gateway import Gateway
from ecom.heap import few_full_collections
from ecom.settings import Settings
from ecom.topology import FLOW_SERVICES as SERVICES
from ecom.topology import Topology
from streams import inventory, order, payment, pricing
from streams.flow import Flow, make_app
from streams.replica import Reference, Users

LOG = logging.getLogger("ecom.streams")
STOP_DEADLINE_S = 20.0
EXIT_STOP_DEADLINE = 128 + signal.SIGTERM


def build(service: str, topology: Topology, bootstrap: str, settings: Settings) -> faust.App:
    """Return the faust app of one service, with its agents registered."""
    if service not in SERVICES:
        raise BadInput(f"unknown worker {service!r}; choose one of {', '.join(SERVICES)} or all")
    app = make_app(service, topology, bootstrap, settings)
    retention = timedelta(seconds=settings.flow_retention_s)
    if service == "inventory":
        stock = Flow(app, topology, service, bootstrap, ("stock", inventory.Stock))
        inventory.register(app, stock)
    elif service == "pricing":
        priced = Flow(app, topology, service, bootstrap, ("priced", pricing.Priced))
        pricing.register(app, priced, Reference(topology, bootstrap), retention)
    elif service == "payment":
        gateway = Gateway(settings.gateway_ledger_path, settings.gateway_decline_share,
                          settings.gateway_latency_ms)  # fmt: skip
        payments = Flow(app, topology, service, bootstrap, ("payments", payment.Payment))
        payment.register(app, payments, gateway, retention)
    else:
        orders = Flow(app, topology, service, bootstrap, ("orders", order.OrderState))
        timeout = timedelta(seconds=settings.payment_timeout_s)
        order.register(app, orders, Users(topology, bootstrap), timeout, retention)
    return app


def run(
    service: str, topology: Topology, bootstrap: str, settings: Settings, verbose: bool
) -> None:
    """Run one service until SIGTERM / SIGINT."""
    faults.reach("crash-at-worker-start")  # the supervision test's worker that always dies
    app = build(service, topology, bootstrap, settings)
    worker = Worker(app, loglevel="INFO" if verbose else "WARNING", quiet=not verbose)
    # What start-up made lives as long as the process: frozen, no collection walks it
    # again. The workers' full collections took 0.1-0.45 s each (bench flow), found
    # little, and every record waited meanwhile; see ecom.heap.
    gc.collect()
    gc.freeze()
    with few_full_collections():
        worker.execute_from_commandline()


class Worker(faust.Worker):
    """faust's worker, without its terminal spinner, and with a deadline on stopping."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        timer = threading.Timer(STOP_DEADLINE_S, _stop_now)
        timer.daemon = True
        timer.start()
        super()._schedule_shutdown(signal)


def _stop_now() -> None:
    LOG.error("did not stop within %.0fs of being asked (brokers gone?); exiting", STOP_DEADLINE_S)
    os._exit(EXIT_STOP_DEADLINE)
