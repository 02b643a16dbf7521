"""`ecom compare sync-async --chart`: the rows drawn as a PNG, or a one-line refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.compare import Row, chart
from ecom.errors import BadInput


def _rows() -> list[Row]:
    return [
        Row("normal", "sync", 600, 600, 0, 600, 0, 38.0, 87.0, 38.0, 87.0, None),
        Row("normal", "async", 600, 600, 0, 600, 0, 5271.0, 9730.0, 142.0, 1015.0, None),
        Row("payment-down", "sync", 600, 279, 321, 279, 0, 45.0, 140.0, 39.0, 130.0, 2.2),
        Row("payment-down", "async", 600, 600, 0, 600, 0, 6594.0, 46643.0, 50.0, 439.0, 13.6),
    ]


def test_the_rows_are_drawn_as_a_png(tmp_path: Path) -> None:
    path = tmp_path / "charts" / "compare.png"
    chart(_rows(), path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # four panels of bars, not an empty canvas


def test_a_chart_where_nothing_can_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BadInput, match="cannot make its folder"):
        chart(_rows(), blocker / "compare.png")
