"""`ecom query`: ask the query view (the database the projections keep), never Kafka."""

from __future__ import annotations

import json
from typing import Any

import click

from consumers.projections import PROJECTIONS
from consumers.queries import MAX_PAGE, QueryView
from consumers.store import Store, open_store
from ecom.cli.context import context
from ecom.cli.output import echo_table, json_option, store_option
from ecom.errors import BadInput
from schemas.rules.order import RANK


@click.group()
@click.option("--generation", "pins", multiple=True, metavar="PROJECTION=N",
              help="Read another generation, such as a view of the past from `ecom replay "
              "--until` (see `ecom projections list`).")  # fmt: skip
@click.pass_context
def query(click_context: click.Context, pins: tuple[str, ...]) -> None:
    """Ask the query view (never Kafka)."""
    pinned: dict[str, int] = {}
    for pin in pins:
        name, _, number = pin.partition("=")
        if not name or not number.isdigit():
            raise BadInput(f"bad --generation {pin!r}: expected PROJECTION=N, such as orders=3")
        if name not in PROJECTIONS:
            raise BadInput(
                f"bad --generation {pin!r}: unknown projection {name!r}; "
                f"known: {', '.join(sorted(PROJECTIONS))}"
            )
        pinned[name] = int(number)
    click_context.obj = pinned


def _view(store_url: str | None) -> QueryView:
    pinned = click.get_current_context().obj
    store = open_store(context(store=store_url).store_url, create=False)  # only reads
    pins = pinned if isinstance(pinned, dict) else {}
    _check_pins(store, pins)
    return QueryView(store, pins)


def _check_pins(store: Store, pins: dict[str, int]) -> None:
    """Refuse a --generation the view database does not hold."""
    for name, number in sorted(pins.items()):
        known = [g.generation for g in store.generations(name)]
        if number not in known:
            held = ", ".join(str(g) for g in known) or "none"
            raise BadInput(
                f"bad --generation {name}={number}: {name} has no generation {number} "
                f"(it has: {held}; see `ecom projections list`)"
            )


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
@click.option("--status", type=click.Choice(list(RANK)), help="Only orders with this status.")
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
    first = view.user_orders(user_id, None, MAX_PAGE)
    known = first["data"]["user"]
    if known is None and not first["data"]["items"]:
        raise BadInput(f"user {user_id} is not in the view (yet)")
    if known is not None and not as_json:
        click.echo(f"user {user_id}: {known['name']} <{known['email']}>, {known['country']}")
    _list(
        lambda after: first if after is None else view.user_orders(user_id, after, MAX_PAGE),
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
