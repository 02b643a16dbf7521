"""Apply a batch of events to a projection's rows, and store the result atomically.

Rows are loaded once per batch (and kept in a bounded cache between batches, valid
while this runner holds its partitions: it is dropped on every assignment and when the
store fences a batch), the pure fold is applied in log order, and the changed rows are
written with the new offsets in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from consumers.projection import Envelope, Key, Projection, Row, RowKey
from consumers.store import OffsetRow, Store
from ecom.errors import InvalidEvent

CACHE_ROWS = 200_000


@dataclass
class Folded:
    """The outcome of folding a batch: rows to write, and events that could not apply."""

    rows: dict[RowKey, Row] = field(default_factory=dict)
    invalid: list[tuple[Envelope, InvalidEvent]] = field(default_factory=list)
    applied: int = 0


class Engine:
    """Fold batches of one projection into one generation of its tables."""

    def __init__(self, projection: Projection, store: Store, generation: int) -> None:
        self.projection = projection
        self.store = store
        self.generation = generation
        self._cache: dict[RowKey, Row | None] = {}

    def fold(self, envelopes: Sequence[Envelope]) -> Folded:
        """Apply envelopes in order; nothing is written yet."""
        keyed = [(envelope, self.projection.keys(envelope.event)) for envelope in envelopes]
        state = self._rows_for(keyed)
        folded = Folded()
        apply, rows, applied = self.projection.apply, folded.rows, 0
        for envelope, keys in keyed:
            try:
                changed = apply(state, envelope, keys)
            except InvalidEvent as error:
                folded.invalid.append((envelope, error))
                continue
            applied += 1
            if changed:
                state.update(changed)
                rows.update(changed)
        folded.applied = applied
        return folded

    def commit(
        self,
        folded: Folded,
        offsets: Sequence[OffsetRow],
        expected: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        """Write the folded rows and the offsets in one transaction (a compare-and-set
        on the offsets when `expected` is given)."""
        try:
            self.store.commit(
                self.projection.name, self.generation, list(folded.rows.values()), offsets, expected
            )
        except BaseException:
            self._cache.clear()  # the database did not take these rows
            raise
        if len(self._cache) > CACHE_ROWS:
            self._cache.clear()
        self._cache.update(folded.rows)

    def forget(self) -> None:
        """Drop the row cache (another writer may have changed the rows)."""
        self._cache.clear()

    def _rows_for(self, keyed: Sequence[tuple[Envelope, list[RowKey]]]) -> dict[RowKey, Row | None]:
        needed: set[RowKey] = set()
        for _, row_keys in keyed:
            needed.update(row_keys)
        state = {key: self._cache[key] for key in needed if key in self._cache}
        missing: dict[type[Row], list[Key]] = {}
        for row_type, key in needed - state.keys():
            missing.setdefault(row_type, []).append(key)
        for row_type, keys in missing.items():
            loaded = self.store.load(row_type, self.generation, keys)
            for key in keys:
                state[(row_type, key)] = loaded.get(key)
        self._cache.update(state)
        return state
