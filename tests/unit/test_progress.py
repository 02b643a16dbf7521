"""Long work draws a bar on a terminal only; elsewhere it stays quiet."""

from __future__ import annotations

import io

import pytest

from ecom.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    with progress("publishing", 10) as advance:
        advance(10)
    assert pipe.getvalue() == ""


def test_a_terminal_gets_a_bar_that_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress("publishing", 10) as advance:
        advance(4)
        advance(3)
    drawn = terminal.getvalue()
    assert "publishing" in drawn
    assert "7/10" in drawn


def test_a_bar_can_be_turned_off_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress("publishing", 10, shown=False) as advance:
        advance(10)
    assert terminal.getvalue() == ""
