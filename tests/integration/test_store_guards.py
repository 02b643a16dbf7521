"""The store's guards, on SQLite and PostgreSQL: a batch is a compare-and-set on its
offsets, a replay switches only when it has caught up, retired generations go."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from consumers.projection import Position
from consumers.projections import PROJECTIONS
from consumers.projections.inventory import Stock
from consumers.replay import drop_retired
from consumers.store import COPY_FROM, OffsetRow, Store
from ecom.errors import Fenced
from schemas.rules.stock import StockLevel
from tests.support import run_cli

INVENTORY = PROJECTIONS["inventory"]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PARTITION = ("inventory", 0)


def _stock(units: int) -> Stock:
    return Stock.of("p-1", StockLevel(on_hand=units), None)


def _at(offset: int) -> list[OffsetRow]:
    return [OffsetRow(*PARTITION, offset)]


def test_a_batch_read_from_an_offset_another_writer_moved_is_refused_whole(view: Store) -> None:
    view.create_generation(INVENTORY, 1, "active")
    view.commit("inventory", 1, [_stock(3)], _at(5), expected={})
    with pytest.raises(Fenced, match=r"inventory\[0\] was written by another runner"):
        view.commit("inventory", 1, [_stock(99)], _at(7), expected={PARTITION: 0})
    assert view.offsets("inventory", 1)[PARTITION].next_offset == 5
    assert view.load(Stock, 1, [("p-1",)])[("p-1",)] == _stock(3), "no row of it was written"
    view.commit("inventory", 1, [_stock(4)], _at(7), expected={PARTITION: 5})
    assert view.offsets("inventory", 1)[PARTITION].next_offset == 7


def test_a_replay_switches_only_once_it_has_read_as_far_as_the_live_view(view: Store) -> None:
    view.create_generation(INVENTORY, 1, "active")
    view.commit("inventory", 1, [_stock(3)], _at(10))
    view.create_generation(INVENTORY, 2, "replaying")
    view.commit("inventory", 2, [_stock(2)], _at(8))
    assert view.switch_if_caught_up("inventory", 2) == (1, {PARTITION: 10})
    assert view.active_generation("inventory") == 1
    view.commit("inventory", 2, [_stock(3)], _at(10), expected={PARTITION: 8})
    assert view.switch_if_caught_up("inventory", 2) == (1, {})
    assert view.active_generation("inventory") == 2


def test_retired_generations_beyond_the_kept_ones_are_dropped(view: Store) -> None:
    view.create_generation(INVENTORY, 1, "active")
    for generation in (2, 3, 4):
        view.create_generation(INVENTORY, generation, "replaying")
        view.switch("inventory", generation)
    view.create_generation(INVENTORY, 5, "past")
    assert drop_retired(view, INVENTORY, keep=1) == [1]
    assert drop_retired(view, INVENTORY, keep=0) == [2], "3 was retired a moment ago"
    _age_the_switch(view)
    assert drop_retired(view, INVENTORY, keep=0) == [3]
    states = {g.generation: g.state for g in view.generations("inventory")}
    assert states == {4: "active", 5: "past"}


def _age_the_switch(view: Store) -> None:
    with view.transaction() as connection:
        connection.execute(
            view.sql("UPDATE ecom_views SET switched_at = ? WHERE projection = ?"),
            ("2000-01-01T00:00:00+00:00", "inventory"),
        )


def test_a_partition_the_batch_did_not_touch_fences_it_too(view: Store) -> None:
    """A row can be written from two topics: a batch of one partition is refused when
    another partition its runner holds moved under it."""
    other = ("products", 0)
    view.create_generation(INVENTORY, 1, "active")
    view.commit("inventory", 1, [_stock(3)], _at(5), expected={})
    view.commit("inventory", 1, [_stock(4)], [OffsetRow(*other, 2)], expected={})
    held = {PARTITION: 5, other: 0}  # this runner last saw products[0] at 0
    with pytest.raises(Fenced, match=r"products\[0\] was written by another runner"):
        view.commit("inventory", 1, [_stock(9)], _at(6), expected=held)
    assert view.offsets("inventory", 1)[PARTITION].next_offset == 5
    view.commit("inventory", 1, [_stock(9)], _at(6), expected={PARTITION: 5, other: 2})


def test_a_big_batch_upserts_like_a_small_one_and_the_last_row_of_a_key_wins(
    view: Store,
) -> None:
    # PostgreSQL writes a batch of COPY_FROM rows or more through COPY and a staging table
    # (emptied at each commit, kept for the next one).
    count = 2 * COPY_FROM + 50
    view.create_generation(INVENTORY, 1, "active")
    first = [Stock.of(f"p-{i}", StockLevel(on_hand=i), None) for i in range(count)]
    view.commit("inventory", 1, [*first, _stock(-1), _stock(7)], _at(count))
    again = [Stock.of(f"p-{i}", StockLevel(on_hand=i + 1000), None) for i in range(0, count, 2)]
    with pytest.raises(Fenced):
        view.commit("inventory", 1, again, _at(count + 1), expected={PARTITION: 0})
    view.commit("inventory", 1, again, _at(count + 1), expected={PARTITION: count})
    last = [Stock.of(f"p-{i}", StockLevel(on_hand=-i), None) for i in range(COPY_FROM)]
    view.commit("inventory", 1, last, _at(count + 2), expected={PARTITION: count + 1})
    stored = view.load(Stock, 1, [(f"p-{i}",) for i in range(count)])
    wanted = {(f"p-{i}",): i + 1000 if i % 2 == 0 else i for i in range(count)}
    wanted[("p-1",)] = 7  # two rows of p-1 in the first batch: the last one counts
    wanted |= {(f"p-{i}",): -i for i in range(COPY_FROM)}
    assert {key: row.on_hand for key, row in stored.items()} == wanted  # type: ignore[attr-defined]


def test_the_checksum_is_the_digest_of_the_rows_whatever_order_they_were_written_in(
    view: Store,
) -> None:
    def row(product: str, units: int, holders: tuple[str, ...]) -> Stock:
        return Stock.of(product, StockLevel(units, len(holders), 0, 0, dict.fromkeys(holders, 1)),
                        None).marked(Position("inventory", 0, units), EPOCH)  # fmt: skip

    # PostgreSQL writes a batch of COPY_FROM rows or more through COPY: one of each way.
    rows = [row(f"p-{i}", i, ("o-1", "o-2", "o-3")[: i % 4]) for i in range(COPY_FROM + 40)]
    shuffled = [row(r.product_id, r.on_hand, tuple(reversed(list(r.reservations))))
                for r in reversed(rows)]  # fmt: skip
    for generation, batches in ((1, [rows]), (2, [shuffled[:20], shuffled[20:]])):
        view.create_generation(INVENTORY, generation, "active")
        for number, batch in enumerate(batches):
            view.commit("inventory", generation, batch, _at(number + 1))
    assert view.checksum(INVENTORY, 1) == view.checksum(INVENTORY, 2) == _digest(rows)
    view.commit("inventory", 2, [row("p-7", 8, ())], _at(3))
    assert view.checksum(INVENTORY, 2) != view.checksum(INVENTORY, 1)


def _digest(rows: list[Stock]) -> str:
    """The digest of rows in key order, worked out from their fields as it always was:
    JSON fields as compact JSON with sorted keys, times in ISO-8601, each row's columns
    as JSON with sorted keys."""
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.product_id):
        record: dict[str, object] = dict(vars(row))
        for name in ("applied", "reservations"):
            record[name] = json.dumps(record[name], sort_keys=True, separators=(",", ":"))
        record["updated_at"] = row.updated_at.isoformat() if row.updated_at else None
        digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()


def test_one_replay_of_a_projection_at_a_time(view: Store, store_url: str) -> None:
    """Two ran at once; a --drop or --resume beside a running replay broke it (a
    traceback, or "written by another runner")."""
    with view.replay_lock("orders"):
        for flags in ([], ["--resume"], ["--drop"], ["--gc"]):
            result = run_cli("replay", "orders", *flags, "--store", store_url,
                             "--bootstrap", "127.0.0.1:1")  # fmt: skip
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith("error: a replay of orders is running on ")
        assert view.generations("orders") == []
        other = run_cli("replay", "inventory", "--store", store_url, "--bootstrap", "127.0.0.1:1")
        assert other.stderr.startswith("error: cannot reach Kafka"), "another projection's own"
    with view.replay_lock("orders"):  # given back at the end of the block
        pass
