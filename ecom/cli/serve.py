"""`ecom serve`: the HTTP services."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from dataclasses import replace
from typing import Any

import click

from ecom.cli.context import context
from ecom.cli.keys import open_keys
from ecom.cli.output import PORT, bootstrap_option
from ecom.errors import PortInUse
from ecom.kafka import use_service
from ecom.metrics import MULTIPROCESS_ENV
from ecom.process import RestartPolicy, Spec, Supervisor, on_signals

host_option = click.option("--host", default="127.0.0.1", show_default=True)


@click.group()
def serve() -> None:
    """Run the command API or the query API."""


@serve.command()
@host_option
@click.option("--port", type=PORT, default=8000, show_default=True)
@bootstrap_option
def commands(host: str, port: int, bootstrap: str | None) -> None:
    """Serve the command API: POST /orders and the shop's other commands (docs at /docs)."""
    from producers.api import create_app

    use_service("commands")
    ctx = context(bootstrap)
    settings = ctx.settings
    sock = _listener(host, port)
    app = create_app(
        ctx.topology,
        ctx.bootstrap,
        open_keys(settings.api_keys_path),
        settings.query_url,
        settings.home / ".ecom" / "idempotency.db",
        settings.max_body_bytes,
    )
    _serve(app, sock, host, port)


@serve.command(name="query")
@host_option
@click.option("--port", type=PORT, default=8001, show_default=True)
@click.option("--store", "store_url", help="View database URL (default ECOM_STORE).")
@bootstrap_option
@click.option(
    "--no-watch", is_flag=True, help="Do not watch Kafka for the live page (view numbers only)."
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes answering on the one port (the kernel spreads connections), "
                   "each restarted if it dies; /metrics sums them all.")  # fmt: skip
def query_command(
    host: str, port: int, store_url: str | None, bootstrap: str | None, no_watch: bool,
    workers: int,
) -> None:  # fmt: skip
    """Serve the query view: orders, products, stock, health (docs at /docs), and the
    live page of the shop at /."""
    ctx = context(bootstrap, store=store_url)
    if workers > 1:
        env = {"ECOM_STORE": ctx.store_url, "KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap}
        args = ("serve", "query", "--host", host, "--port", str(port),
                *(["--no-watch"] if no_watch else []))  # fmt: skip
        _run_workers(Spec("query-api", args, env, inherit=True), host, port, workers,
                     ctx.settings.restart_backoff_s)  # fmt: skip
        return
    from consumers.api import create_app
    from consumers.live import Live, order_watch
    from consumers.queries import QueryView
    from consumers.store import open_store

    use_service("monitor")  # the live page's watch reads as the read-only monitor
    sock = _listener(host, port)
    store = open_store(ctx.store_url, folders=False)  # the projections fill it
    watch = None if no_watch else order_watch(ctx.topology, ctx.bootstrap)
    live = Live(QueryView(store), watch).start()
    keys = open_keys(ctx.settings.api_keys_path)
    app = create_app(store, keys, ctx.settings.max_body_bytes, live=live)
    try:
        _serve(app, sock, host, port)
    finally:
        live.stop()


SHARED_PORT_ENV = "ECOM_SHARED_PORT"  # set by --workers for its children


def _listener(host: str, port: int) -> socket.socket:
    """Bind the port before anything else starts: a taken one fails at once (PortInUse).
    A child of --workers shares it with its siblings."""
    return _bound_socket(host, port, share=bool(os.environ.get(SHARED_PORT_ENV)))


def _serve(app: Any, sock: socket.socket, host: str, port: int) -> None:
    """Say where, then serve until SIGTERM or Ctrl-C (a child of --workers leaves the
    saying to its parent, which says it once for all)."""
    import uvicorn

    shared = bool(os.environ.get(SHARED_PORT_ENV))
    if not shared:
        sock.listen(2048)  # connections wait in the backlog from the moment we say so
        click.echo(f"serving on http://{host}:{port} (pid {os.getpid()}); "
                   "SIGTERM or Ctrl-C stops it")  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    with sock:
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            if shared:  # a child of --workers: its parent answers Ctrl-C
                raise


def _run_workers(spec: Spec, host: str, port: int, workers: int, backoff: float) -> None:
    """Run `workers` children of spec on one port until SIGTERM, restarting the dead."""
    # Bound (not listening) here first: a port another program holds fails at once, and
    # none can take it while children restart (but one that sets SO_REUSEPORT too: the
    # probe turns away another `--workers` already answering there).
    if _answering(host, port):
        raise PortInUse(f"cannot serve on {host}:{port} (something answers there already)")
    holder = _bound_socket(host, port)
    stopping = threading.Event()
    with (
        holder,
        tempfile.TemporaryDirectory(prefix="ecom-metrics-") as metrics_dir,
        Supervisor(click.echo, RestartPolicy(first_backoff_s=backoff)) as supervisor,
        on_signals(stopping.set),
    ):
        env = {**spec.env, SHARED_PORT_ENV: "1", MULTIPROCESS_ENV: metrics_dir}
        for n in range(1, workers + 1):
            supervisor.start(replace(spec, name=f"{spec.name}-{n}", env=env))
        pids = ", ".join(str(c.pid) for c in supervisor.running.values())
        click.echo(f"serving on http://{host}:{port} from {workers} processes (pids: {pids}); "
                   "SIGTERM or Ctrl-C stops them")  # fmt: skip
        while not stopping.wait(0.2):
            supervisor.check()
    click.echo("stopped the query API")


def _answering(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def _bound_socket(host: str, port: int, share: bool = True) -> socket.socket:
    """Bind (not listen) host:port; `share`: with SO_REUSEPORT, for --workers."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # SO_REUSEADDR as uvicorn sets it: the connections of a run just ended (TIME_WAIT)
    # do not hold the port; a listener still does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortInUse(f"cannot serve on {host}:{port} ({error.strerror})") from error
    return sock
