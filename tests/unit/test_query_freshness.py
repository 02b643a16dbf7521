"""The query view keeps each projection's freshness between reads while the database
does not change (SQLite's data_version): every commit in between must show."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from consumers.projections import PROJECTIONS
from consumers.queries import QueryView
from consumers.store import OffsetRow, open_store


def test_freshness_kept_between_reads_follows_every_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'view.db'}"
    with open_store(url) as writer, open_store(url) as reader:
        writer.create_generation(PROJECTIONS["orders"], 1, "active")
        writer.commit("orders", 1, [], [OffsetRow("t", 0, 5, 9)])
        view = QueryView(reader)
        first = view.health()["projections"]["orders"]
        assert (first["offsets"], first["lag"]) == ({"t/0": 5}, 4)
        assert _orders_freshness(view) == first

        writer.commit("orders", 1, [], [OffsetRow("t", 0, 9, 9)])
        assert _orders_freshness(view)["offsets"] == {"t/0": 9}, "a commit between reads"

        elsewhere: list[dict[str, Any]] = []
        thread = threading.Thread(target=lambda: elsewhere.append(_orders_freshness(view)))
        thread.start()
        thread.join()
        assert elsewhere[0]["offsets"] == {"t/0": 9}, "another thread, its own connection"

        # A new connection's versions start where any other new one's did.
        reader.close()
        assert _orders_freshness(view)["offsets"] == {"t/0": 9}
        reader.close()
        writer.commit("orders", 1, [], [OffsetRow("t", 0, 12, 12)])
        assert _orders_freshness(view)["offsets"] == {"t/0": 12}

        reader.commit("orders", 1, [], [OffsetRow("t", 0, 14, 14)])
        assert _orders_freshness(view)["offsets"] == {"t/0": 14}, "a write of its own"


def _orders_freshness(view: QueryView) -> dict[str, Any]:
    answer = view.order("o-1")
    assert answer is not None
    assert answer["data"] is None
    freshness: dict[str, Any] = answer["freshness"]["orders"]
    return freshness
