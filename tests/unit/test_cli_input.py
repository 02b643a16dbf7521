"""Bad input on the command line: one line on stderr, the exit code README promises, no
traceback, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.projections import PROJECTIONS
from consumers.store import open_store
from tests.support import run_cli


def _one_line_error(result_stderr: str) -> str:
    assert "Traceback" not in result_stderr
    assert result_stderr.count("\n") == 1, result_stderr
    return result_stderr.strip()


@pytest.mark.parametrize("number", ["99", "0"])
def test_a_generation_the_view_does_not_hold_is_named_with_those_it_does(
    tmp_path: Path, number: str
) -> None:
    url = f"sqlite:///{tmp_path / 'view.db'}"
    with open_store(url) as store:
        store.create_generation(PROJECTIONS["orders"], 1, "active")
        store.create_generation(PROJECTIONS["orders"], 2, "past")
    result = run_cli("query", "--generation", f"orders={number}", "order", "o-1", "--store", url)
    assert result.returncode == 2
    message = _one_line_error(result.stderr)
    assert f"orders has no generation {number}" in message
    assert "it has: 1, 2" in message
    held = run_cli("query", "--generation", "orders=2", "orders", "--store", url)
    assert held.returncode == 0, held.stderr
