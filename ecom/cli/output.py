"""What commands share: plain-text tables and the common options."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import click


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render rows as aligned columns under headers."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a table to stdout."""
    click.echo(table(headers, rows))


bootstrap_option = click.option(
    "--bootstrap",
    metavar="HOST:PORT[,...]",
    help="Kafka bootstrap servers (else KAFKA_BOOTSTRAP_SERVERS, else the local cluster).",
)


store_option = click.option(
    "--store",
    "store_url",
    help="View database URL (default ECOM_STORE or sqlite:///.ecom/view.db).",
)


# A port to listen on: 0 would be a port the kernel picks, that nobody is told of.
class FiniteRange(click.FloatRange):
    """A FloatRange that refuses nan and inf, whose comparisons slip past its bounds."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:  # fmt: skip
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


PORT = click.IntRange(1, 65535)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (lists in full).")
