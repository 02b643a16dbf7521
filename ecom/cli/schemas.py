"""`ecom schemas`: the event contracts and their evolution guard."""

from __future__ import annotations

from pathlib import Path

import click

from ecom.cli.output import echo_table
from ecom.errors import SchemaIncompatible
from schemas.evolution import check, release, unlike_models
from schemas.registry import CURRENT_DIR, RELEASED_DIR, SchemaRegistry

dir_type = click.Path(path_type=Path, file_okay=False, exists=True)


@click.group()
def schemas() -> None:
    """List event schemas; check and release schema changes."""


@schemas.command(name="check")
@click.option("--current", "current_dir", type=dir_type, default=CURRENT_DIR, show_default=True)
@click.option("--released", "released_dir", type=dir_type, default=RELEASED_DIR, show_default=True)
def check_command(current_dir: Path, released_dir: Path) -> None:
    """Fail if a schema change breaks reading old events or new ones (full compatibility)."""
    registry = SchemaRegistry.load(current_dir, released_dir)
    report, unwritable = check(registry), unlike_models(registry)
    for problem in report.problems:
        click.echo(f"BREAKING  {problem}")
    for problem in unwritable:
        click.echo(f"UNWRITABLE  {problem}")
    for event_type in report.unreleased:
        click.echo(f"unreleased  {event_type} (run `ecom schemas release` to freeze it)")
    if report.problems:
        raise SchemaIncompatible(
            f"{len(report.problems)} incompatible schema change(s); "
            "add defaults or a new event type instead"
        )
    if unwritable:
        raise SchemaIncompatible(f"{len(unwritable)} schema(s) unlike their models: "
                                 "the code could not write them")  # fmt: skip
    click.echo(
        f"ok: {report.checked} released version(s) fully compatible with the current schemas"
    )


@schemas.command(name="release")
def release_command() -> None:
    """Freeze new or changed schemas as their next released version."""
    registry = SchemaRegistry.load()
    problems = check(registry).problems + unlike_models(registry)
    if problems:
        raise SchemaIncompatible("fix `ecom schemas check` first: " + problems[0])
    for path in release(registry, RELEASED_DIR):
        click.echo(f"released {path.relative_to(RELEASED_DIR.parent)}")


@schemas.command(name="list")
def list_command() -> None:
    """Show each event type, its released versions and its fingerprint."""
    registry = SchemaRegistry.load()
    rows = [
        (
            name,
            current.domain,
            ",".join(f"v{v.version}" for v in registry.released.get(name, [])) or "-",
            current.fingerprint.hex(),
        )
        for name, current in sorted(registry.current.items())
    ]
    echo_table(["event", "domain", "released", "fingerprint"], rows)
