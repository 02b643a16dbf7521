"""Run order-flow workers: `ecom worker inventory|pricing|payment|order|all`.

One service per process (a faust app each). `all` starts the four as child processes,
forwards SIGTERM / SIGINT to them, and stops them all if one of them fails.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import faust

from ecom.errors import BadInput, EcomError
from ecom.settings import Settings
from ecom.topology import Topology
from streams import inventory, order, payment, pricing
from streams.flow import Flow, make_app, restart_process
from streams.payment import Gateway
from streams.reference import Reference

SERVICES = ("inventory", "pricing", "payment", "order")
LOG = logging.getLogger("ecom.streams")
Report = Callable[[str], None]


def build(service: str, topology: Topology, bootstrap: str, settings: Settings) -> faust.App:
    """Return the faust app of one service, with its agents registered."""
    if service not in SERVICES:
        raise BadInput(f"unknown worker {service!r}; choose one of {', '.join(SERVICES)} or all")
    app = make_app(service, topology, bootstrap, settings)
    flow = Flow(app, topology, service)
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


def run_all(bootstrap: str, report: Report) -> int:
    """Run every service in a child process; return the exit code to leave with."""
    command = [sys.executable, "-m", "ecom", "worker"]
    children = {
        service: subprocess.Popen([*command, service, "--bootstrap", bootstrap])
        for service in SERVICES
    }
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    pids = ", ".join(str(c.pid) for c in children.values())
    report(f"running workers {', '.join(SERVICES)} (pids {pids})")
    try:
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.2)
        failed = {
            name: c.returncode for name, c in children.items() if c.returncode not in (None, 0)
        }
        stop()
        for child in children.values():
            child.wait(60)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed and not stopping:
        raise EcomError(f"worker {', '.join(failed)} exited with {failed}; stopped the others")
    return 0
