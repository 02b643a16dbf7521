"""`ecom worker`: run the order flow's stream processors."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import click

from ecom import metrics
from ecom.cli.context import context
from ecom.cli.output import bootstrap_option
from ecom.errors import BadInput, KafkaRefused, KafkaUnavailable
from ecom.kafka import Admin, use_service
from ecom.process import RestartPolicy, Spec, Supervisor, on_signals, restarts_so_far
from ecom.topology import FLOW_SERVICES as SERVICES
from ecom.topology import Topology

LOG = logging.getLogger("ecom.streams")
SUPERVISED_ENV = "ECOM_SUPERVISED"  # set by `worker all` for its children
WAIT_FOR_KAFKA_S = 2.0
# Each worker's own default, so that `worker all` on one host serves four of them.
METRICS_PORTS = {"inventory": 9401, "pricing": 9402, "payment": 9403, "order": 9404}


@click.command()
@click.argument("name", type=click.Choice([*SERVICES, "all"]))
@bootstrap_option
@click.option("-v", "--verbose", is_flag=True, help="faust's own logs.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), envvar="ECOM_METRICS_PORT",
              help="Serve /metrics and /livez on 127.0.0.1:PORT (0: off; default "
                   "inventory 9401, pricing 9402, payment 9403, order 9404; `all`: the "
                   "four on PORT+1 to PORT+4).")  # fmt: skip
def worker(name: str, bootstrap: str | None, verbose: bool, metrics_port: int | None) -> None:
    """Run one order-flow worker until SIGTERM; `all` runs the four, each in its own
    process, restarting one that dies (and giving up, naming it, if it keeps dying)."""
    ctx = context(bootstrap)
    if name == "all":
        check_metrics_ports(metrics_port)
        _require_topics(ctx.topology, ctx.bootstrap, SERVICES)
        _run_all(ctx.bootstrap, verbose, metrics_port, ctx.settings.restart_backoff_s)
        return
    from streams.worker import run

    use_service(name)
    metrics.count_restarts(name, restarts_so_far())
    port = METRICS_PORTS[name] if metrics_port is None else metrics_port
    metrics.serve(port, ready=kafka_answers(ctx.bootstrap))
    if os.environ.get(SUPERVISED_ENV):
        _wait_for_kafka(ctx.topology, ctx.bootstrap, name)
    else:
        _require_topics(ctx.topology, ctx.bootstrap, (name,))
    run(name, ctx.topology, ctx.bootstrap, ctx.settings, verbose)


def kafka_answers(bootstrap: str) -> Callable[[], list[str]]:
    """A worker's readiness: the cluster answers (asked on each /readyz, one at a time)."""
    lock = threading.Lock()
    clients: list[Admin] = []  # made on the first question

    def ready() -> list[str]:
        with lock:
            if not clients:
                clients.append(Admin(bootstrap))
            answers = clients[0].answers()
        if answers:
            return []
        return [f"Kafka at {bootstrap} does not answer"]

    return ready


def _wait_for_kafka(topology: Topology, bootstrap: str, name: str) -> None:
    """A child of `worker all`, restarted during an outage, waits for the cluster (its
    /readyz says so) instead of failing again and again until the supervisor gives up on
    the whole flow. Missing or forbidden topics still stop it (exit 3)."""
    while True:
        try:
            _require_topics(topology, bootstrap, (name,))
            return
        except KafkaRefused:
            raise
        except KafkaUnavailable as error:
            LOG.warning("%s; trying again in %.0fs", error, WAIT_FOR_KAFKA_S)
            time.sleep(WAIT_FOR_KAFKA_S)


def _require_topics(topology: Topology, bootstrap: str, services: Iterable[str]) -> None:
    """Kafka unreachable, a wrong password, a topic missing or not granted: one line and
    exit 3 now (faust would log it once and wait for good, looking ready)."""
    names = {name for s in services for name in topology.topics_of(f"order-flow-{s}")}
    Admin(bootstrap).require_topics(sorted(names))


def check_metrics_ports(given: int | None) -> None:
    """Refuse the four metrics ports of `worker all` now, out of range or taken: said
    once, here, not by four children failing on them."""
    if given and given + len(SERVICES) > 65535:
        raise BadInput(f"metrics port {given} (--metrics-port, ECOM_METRICS_PORT): `worker "
                       "all` serves the four on the next four ports, which must be 65535 "
                       "or below")  # fmt: skip
    for service in SERVICES:
        metrics.check_free(metrics_port_of(service, given))


def metrics_port_of(service: str, given: int | None) -> int:
    """The metrics port of one of `worker all`'s workers: the defaults (9401-9404), off
    (0), or the four ports after the one given, which is the projections runner's (as
    9400 is by default), so that one ECOM_METRICS_PORT moves them all."""
    if given is None:
        return METRICS_PORTS[service]
    return given and given + 1 + SERVICES.index(service)


def _run_all(bootstrap: str, verbose: bool, metrics_port: int | None, backoff: float) -> None:
    stopping = threading.Event()
    policy = RestartPolicy(first_backoff_s=backoff)
    with Supervisor(click.echo, policy) as supervisor, on_signals(stopping.set):
        for service in SERVICES:
            port = metrics_port_of(service, metrics_port)
            args = ("worker", service, "--bootstrap", bootstrap, "--metrics-port", str(port),
                    *(["-v"] if verbose else []))  # fmt: skip
            supervisor.start(Spec(service, args, {SUPERVISED_ENV: "1"}, inherit=True))
        pids = ", ".join(f"{n} {c.pid}" for n, c in supervisor.running.items())
        click.echo(f"running workers (pids: {pids}); SIGTERM or Ctrl-C stops them")
        while not stopping.wait(0.2):
            supervisor.check()
    click.echo("stopped the workers")
