"""`ecom asyncapi`: the AsyncAPI 3.0 document of topics.yaml and the schemas."""

from __future__ import annotations

import contextlib
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
    if check is not None and output is not None:
        raise BadInput("--check compares, -o writes: give one of them")
    text = render(context().topology, version("ecomstream"))
    if check is not None:
        _check(check, text)
        click.echo(f"ok: {check} matches topics.yaml and the schemas")
        return
    if output is None:
        click.echo(text, nl=False)
        return
    partial = output.with_name(output.name + ".partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text)
        partial.replace(output)  # never half-written
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise BadInput(f"cannot write {output}: {error.strerror or error}") from error
    click.echo(f"wrote {output}")


def _check(path: Path, text: str) -> None:
    if not path.is_file():
        raise BadInput(f"{path} does not exist: write it with `ecom asyncapi -o {path}`")
    try:
        held = path.read_text(errors="replace")  # not text at all: stale all the same
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror or error}") from error
    if held != text:
        raise BadInput(f"{path} is stale: regenerate it with `ecom asyncapi -o {path}`")
