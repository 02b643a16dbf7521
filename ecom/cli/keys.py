"""`ecom keys`: the API keys of the command and query APIs."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from ecom.apikeys import SCOPES, ApiKeys
from ecom.cli.output import echo_table
from ecom.settings import get_settings


def open_keys(path: Path | None = None) -> ApiKeys:
    """Open the API keys file (ECOM_API_KEYS_FILE), saying so when it was open to others."""
    keys = ApiKeys(path or get_settings().api_keys_path)
    for note in keys.notes:
        click.echo(f"note: {note}", err=True)
    return keys


def _keys() -> ApiKeys:
    return open_keys()


@click.group()
def keys() -> None:
    """Make, list and revoke the keys the HTTP APIs require (Authorization: Bearer)."""


@keys.command()
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), required=True,
              help="commands: the command API; queries: the query API.")  # fmt: skip
def create(name: str, scope: str) -> None:
    """Make a key and print it: the only time it is shown (only its hash is kept)."""
    click.echo(_keys().create(name, scope))


@keys.command(name="list")
def list_keys() -> None:
    """Show each key's name, scope and creation time (never the key)."""
    rows = [
        (k.name, k.scope, datetime.datetime.fromtimestamp(k.created_at).isoformat(" ", "seconds"))
        for k in _keys().list()
    ]
    echo_table(["name", "scope", "created"], rows)


@keys.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Delete a key: requests with it get 401 from now on."""
    _keys().revoke(name)
    click.echo(f"revoked {name}")
