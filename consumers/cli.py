"""`ecom projections` and `ecom query`: run the read side, and read it."""

from __future__ import annotations

import json
from typing import Any

import click

from consumers.projections import PROJECTIONS, by_names
from consumers.queries import MAX_PAGE, QueryView
from consumers.store import open_store
from consumers.workers import run_workers
from ecom.cli.output import bootstrap_option, echo_table
from ecom.errors import BadInput
from ecom.settings import get_settings, resolve_bootstrap
from ecom.topology import Topology

store_option = click.option(
    "--store",
    "store_url",
    help="View database URL (default ECOM_STORE or sqlite:///.ecom/view.db).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (lists in full).")


def _store_url(store_url: str | None) -> str:
    return store_url or get_settings().store_url


@click.group()
def projections() -> None:
    """Build the query view from the event log."""


@projections.command(name="run")
@click.argument("names", nargs=-1)
@store_option
@bootstrap_option
@click.option("--crash-after-db-commit", type=int, hidden=True)  # fault injection for tests
def run_command(
    names: tuple[str, ...],
    store_url: str | None,
    bootstrap: str | None,
    crash_after_db_commit: int | None,
) -> None:
    """Run projections (all, or the NAMES given) until SIGTERM / Ctrl-C."""
    settings = get_settings()
    topology = Topology.load(settings.topics_path, settings.topic_prefix)
    run_workers(
        by_names(list(names)),
        _store_url(store_url),
        topology,
        resolve_bootstrap(bootstrap),
        click.echo,
        crash_after_db_commit,
    )


@projections.command(name="list")
@store_option
def list_command(store_url: str | None) -> None:
    """Show each projection's generation, lag and newest event time."""
    health = QueryView(open_store(_store_url(store_url))).health()["projections"]
    rows = []
    for name, projection in PROJECTIONS.items():
        info = health.get(name, {})
        rows.append(
            (
                name,
                ",".join(projection.topics),
                info.get("generation") or "-",
                info.get("lag") if info.get("lag") is not None else "-",
                info.get("event_time") or "-",
            )
        )
    echo_table(["projection", "topics", "generation", "lag", "newest event"], rows)


@click.group()
@click.option("--generation", "pins", multiple=True, metavar="PROJECTION=N",
              help="Read another generation, such as a view of the past from `ecom replay "
              "--until` (see `ecom projections list`).")  # fmt: skip
@click.pass_context
def query(context: click.Context, pins: tuple[str, ...]) -> None:
    """Ask the query view (never Kafka)."""
    pinned: dict[str, int] = {}
    for pin in pins:
        name, _, number = pin.partition("=")
        if name not in PROJECTIONS or not number.isdigit():
            raise BadInput(f"bad --generation {pin!r}: expected PROJECTION=N, such as orders=3")
        pinned[name] = int(number)
    context.obj = pinned


def _view(store_url: str | None) -> QueryView:
    pinned = click.get_current_context().obj
    store = open_store(_store_url(store_url))
    return QueryView(store, pinned if isinstance(pinned, dict) else None)


def _show(answer: dict[str, Any] | None, what: str, as_json: bool) -> None:
    if answer is None or answer["data"] is None:
        raise BadInput(f"{what} is not in the view (yet)")
    if as_json:
        click.echo(json.dumps(answer, indent=2, default=str))
        return
    for key, value in answer["data"].items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        click.echo(f"{key:>16}: {shown}")
    _freshness(answer)


def _freshness(answer: dict[str, Any]) -> None:
    for name, info in answer["freshness"].items():
        click.echo(f"[{name}: lag {info['lag']}, newest event {info['event_time']}]")


def _all_pages(fetch: Any) -> dict[str, Any]:
    answer: dict[str, Any] = fetch(None)
    items = list(answer["data"]["items"])
    while answer["data"]["next"]:
        answer = fetch(answer["data"]["next"])
        items += answer["data"]["items"]
    answer["data"] = {"items": items, "next": None}
    return answer


def _list(fetch: Any, columns: list[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_all_pages(fetch), indent=2, default=str))
        return
    answer = fetch(None)
    echo_table(columns, [[item.get(c) for c in columns] for item in answer["data"]["items"]])
    if answer["data"]["next"]:
        click.echo(f"(more after {answer['data']['next']}; --json lists all)")
    _freshness(answer)


@query.command()
@click.argument("order_id")
@store_option
@json_option
def order(order_id: str, store_url: str | None, as_json: bool) -> None:
    """One order with its timeline."""
    _show(_view(store_url).order(order_id), f"order {order_id}", as_json)


@query.command()
@click.option("--status", help="Only orders with this status.")
@store_option
@json_option
def orders(status: str | None, store_url: str | None, as_json: bool) -> None:
    """Orders (first page, or all with --json)."""
    view = _view(store_url)
    _list(
        lambda after: view.orders(status, after, MAX_PAGE),
        ["order_id", "user_id", "status", "total_minor", "currency", "updated_at"],
        as_json,
    )


@query.command()
@click.argument("user_id")
@store_option
@json_option
def user(user_id: str, store_url: str | None, as_json: bool) -> None:
    """A user and their orders."""
    view = _view(store_url)
    _list(
        lambda after: view.user_orders(user_id, after, MAX_PAGE),
        ["order_id", "status", "total_minor", "currency", "updated_at"],
        as_json,
    )


@query.command()
@click.argument("product_id")
@store_option
@json_option
def product(product_id: str, store_url: str | None, as_json: bool) -> None:
    """A product with price, tax rates and stock."""
    _show(_view(store_url).product(product_id), f"product {product_id}", as_json)


@query.command()
@store_option
@json_option
def products(store_url: str | None, as_json: bool) -> None:
    """Products (first page, or all with --json)."""
    view = _view(store_url)
    _list(lambda after: view.products(after, MAX_PAGE), ["product_id", "name", "category"], as_json)


@query.command()
@click.argument("product_id")
@store_option
@json_option
def inventory(product_id: str, store_url: str | None, as_json: bool) -> None:
    """A product's stock."""
    _show(_view(store_url).inventory(product_id), f"stock of {product_id}", as_json)


@click.command()
@click.argument("name", type=click.Choice(sorted(PROJECTIONS)))
@click.option("--until", metavar="OFFSET|DATETIME",
              help="Stop there in every partition and keep the result beside the live view "
              "(a view of the past; no switch).")  # fmt: skip
@click.option("--resume", is_flag=True, help="Carry on with an interrupted replay.")
@click.option("--drop", is_flag=True, help="Throw an interrupted replay away.")
@store_option
@bootstrap_option
def replay(name: str, until: str | None, resume: bool, drop: bool, store_url: str | None,
           bootstrap: str | None) -> None:  # fmt: skip
    """Rebuild projection NAME from the log into a new generation, then switch to it."""
    from consumers.replay import Replay

    settings = get_settings()
    topology = Topology.load(settings.topics_path, settings.topic_prefix)
    with open_store(_store_url(store_url)) as store:
        job = Replay(PROJECTIONS[name], store, topology, resolve_bootstrap(bootstrap), click.echo)
        if drop:
            click.echo(f"dropped the interrupted replay of {name} (generation {job.drop()})")
            return
        outcome = job.run(until, resume)
    rate = outcome.events / outcome.seconds if outcome.seconds else 0.0
    click.echo(
        f"replayed {outcome.events} events into generation {outcome.generation} in "
        f"{outcome.seconds:.1f}s ({rate:,.0f} events/s), checksum {outcome.checksum[:16]}"
    )
    if until is not None:
        click.echo(
            f"generation {outcome.generation} holds {name} as of {until} (queries still read "
            f"the live one): ecom query --generation {name}={outcome.generation} ..."
        )
    else:
        click.echo(f"the view now reads generation {outcome.generation} "
                   f"(was {outcome.switched_from})")  # fmt: skip
