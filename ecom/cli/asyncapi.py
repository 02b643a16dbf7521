"""`ecom asyncapi`: the AsyncAPI 3.0 document of topics.yaml and the schemas."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import click

from ecom.asyncapi import render
from ecom.cli.context import context
from ecom.errors import BadInput

COMMITTED = "docs/asyncapi.yaml"


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the document to FILE instead of printing it.")  # fmt: skip
@click.option("--check", "check", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Exit 2 if FILE (such as {COMMITTED}) differs from the document.")  # fmt: skip
def asyncapi(output: Path | None, check: Path | None) -> None:
    """Print the AsyncAPI 3.0 document (YAML) made from topics.yaml and the .avsc files."""
    text = render(context().topology, version("ecomstream"))
    if check is not None:
        if not check.is_file():
            raise BadInput(f"{check} does not exist: write it with `ecom asyncapi -o {check}`")
        if check.read_text() != text:
            raise BadInput(f"{check} is stale: regenerate it with `ecom asyncapi -o {check}`")
        click.echo(f"ok: {check} matches topics.yaml and the schemas")
        return
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(text)
    partial.replace(output)  # never half-written
    click.echo(f"wrote {output}")
