"""`ecom serve`: the HTTP services."""

from __future__ import annotations

import click

from ecom.apikeys import ApiKeys
from ecom.cli.context import context
from ecom.cli.output import bootstrap_option
from ecom.kafka import use_service

host_option = click.option("--host", default="127.0.0.1", show_default=True)


@click.group()
def serve() -> None:
    """Run the command API or the query API."""


@serve.command()
@host_option
@click.option("--port", type=int, default=8000, show_default=True)
@bootstrap_option
def commands(host: str, port: int, bootstrap: str | None) -> None:
    """Serve the command API: POST /orders and the shop's other commands (docs at /docs)."""
    import uvicorn

    from producers.api import create_app

    use_service("commands")
    ctx = context(bootstrap)
    settings = ctx.settings
    app = create_app(
        ctx.topology,
        ctx.bootstrap,
        ApiKeys(settings.api_keys_path),
        settings.query_url,
        settings.home / ".ecom" / "idempotency.db",
        settings.max_body_bytes,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


@serve.command(name="query")
@host_option
@click.option("--port", type=int, default=8001, show_default=True)
@click.option("--store", "store_url", help="View database URL (default ECOM_STORE).")
@bootstrap_option
@click.option(
    "--no-watch", is_flag=True, help="Do not watch Kafka for the live page (view numbers only)."
)
def query_command(
    host: str, port: int, store_url: str | None, bootstrap: str | None, no_watch: bool
) -> None:
    """Serve the query view: orders, products, stock, health (docs at /docs), and the
    live page of the shop at /."""
    import uvicorn

    from consumers.api import create_app
    from consumers.live import Live, order_watch
    from consumers.queries import QueryView
    from consumers.store import open_store

    use_service("monitor")  # the live page's watch reads as the read-only monitor
    ctx = context(bootstrap, store=store_url)
    store = open_store(ctx.store_url)
    watch = None if no_watch else order_watch(ctx.topology, ctx.bootstrap)
    live = Live(QueryView(store), watch).start()
    keys = ApiKeys(ctx.settings.api_keys_path)
    app = create_app(store, keys, ctx.settings.max_body_bytes, live=live)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        live.stop()
