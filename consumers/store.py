"""Where views live: SQLite (WAL, the embedded default) or PostgreSQL (psycopg 3).

Each projection keeps its rows in tables of its own, per generation (`orders__g1`), and
its consumed offsets in `ecom_offsets`, written in the same transaction as the rows.
`ecom_views` says which generation queries read; replay builds the next generation
beside it and switches this pointer in one transaction.

The SQL is written once with `?` placeholders and portable types and upserts; the
PostgreSQL connection rewrites placeholders to `%s`.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from consumers.projection import Key, Projection, Row, Table
from ecom.errors import BadInput, Fenced, StoreError
from ecom.settings import redact

IN_CHUNK = 500
COPY_FROM = 100  # PostgreSQL: rows of one type in a batch from which COPY pays off
REPLAY_LOCKS = 0x65636F6D  # PostgreSQL: the advisory locks' class ("ecom")
META_TABLES = {
    "ecom_views": Table(
        "ecom_views",
        ("projection",),
        {"projection": "TEXT", "generation": "BIGINT", "switched_at": "TEXT"},
    ),
    "ecom_generations": Table(
        "ecom_generations",
        ("projection", "generation"),
        {
            "projection": "TEXT",
            "generation": "BIGINT",
            "state": "TEXT",
            "cluster_id": "TEXT",
            "topic_ids": "TEXT",
            "until_spec": "TEXT",
            "created_at": "TEXT",
        },
    ),
    "ecom_offsets": Table(
        "ecom_offsets",
        ("projection", "generation", "topic", "kafka_partition"),
        {
            "projection": "TEXT",
            "generation": "BIGINT",
            "topic": "TEXT",
            "kafka_partition": "BIGINT",
            "next_offset": "BIGINT",
            "high_watermark": "BIGINT",
            "event_time": "TEXT",
        },
    ),
    # What each running runner last said of itself: readiness is read from here.
    "ecom_runners": Table(
        "ecom_runners",
        ("projection", "instance"),
        {
            "projection": "TEXT",
            "instance": "TEXT",
            "beat_at": "DOUBLE PRECISION",
            "lag": "BIGINT",
            "caught_up_at": "DOUBLE PRECISION",
            "kafka_down_since": "DOUBLE PRECISION",
        },
    ),
}
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class OffsetRow:
    """A partition's position in a view: the next offset to read, and what was seen."""

    topic: str
    partition: int
    next_offset: int
    high_watermark: int | None = None
    event_time: str | None = None


@dataclass(frozen=True)
class Generation:
    """One build of a projection's tables."""

    projection: str
    generation: int
    state: str
    cluster_id: str | None
    topic_ids: dict[str, str]
    until_spec: str | None = None


class Connection(Protocol):
    """The bits of a DB-API connection the store uses."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any: ...


def table_name(table: Table, generation: int) -> str:
    """Return the physical name of a row table in a generation."""
    return f"{table.name}__g{generation}"


class Store:
    """A view database: rows, offsets and generations, written atomically."""

    dialect = "sqlite"
    row_lock = ""  # appended to a SELECT whose rows a transaction is about to decide on

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()
        self.ensure_meta()

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> Any:
        raise NotImplementedError

    @property
    def connection(self) -> Any:
        """This thread's connection (one per thread, opened on first use)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
            self._local.serial = next(_CONNECTIONS)
            with self._lock:
                self._opened.append(connection)
        return connection

    def close(self) -> None:
        """Close every connection this store opened, in any thread (call it at the end)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def replay_lock(self, projection: str) -> Iterator[None]:
        """Hold off every other replay of `projection` (its --resume, --drop and --gc too)
        for the block; the lock goes with the process, however it ends."""
        yield

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Within the block, this thread's commits need not reach the disk before they
        return (a replay's shadow copy, which nobody reads until the switch; the
        switch's own commit, after the block, is durable and so is all before it)."""
        yield

    @contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Connection]:
        """Run statements in one transaction; roll back if anything fails. `exclusive`
        takes the write lock at once (reads that decide a write see the latest rows)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def sql(self, statement: str) -> str:
        """Adapt a statement written with ? placeholders to this database."""
        return statement

    def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one query in a transaction of its own; return rows as dicts."""
        with self.snapshot() as read:
            return read(statement, params)

    @contextmanager
    def snapshot(self) -> Iterator[Callable[[str, Sequence[Any]], list[dict[str, Any]]]]:
        """Run several queries against one consistent snapshot of the database."""
        with self.transaction() as connection:
            self._begin_snapshot(connection)

            def read(statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
                cursor = connection.execute(self.sql(statement), params)
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            yield read

    def _begin_snapshot(self, connection: Connection) -> None:
        """SQLite read transactions are snapshots already."""

    def version(self, read: Callable[[str, Sequence[Any]], list[dict[str, Any]]]) -> Any:
        """Within a snapshot that has read already: a token equal to an earlier one of this
        thread only if nothing was committed between the two snapshots; None when the
        database cannot tell."""
        return None

    # -- schema ----------------------------------------------------------------------

    def ensure_meta(self) -> None:
        with self.transaction() as connection:
            for table in META_TABLES.values():
                connection.execute(self._create_table_sql(table.name, table))

    def ensure_tables(self, projection: Projection, generation: int, indexed: bool = True) -> None:
        """Create a projection's row tables for a generation, if missing (their secondary
        indexes too, unless not `indexed` yet)."""
        with self.transaction() as connection:
            for row_type in projection.row_types:
                name = table_name(row_type.TABLE, generation)
                connection.execute(self._create_table_sql(name, row_type.TABLE))
        if indexed:
            self.ensure_indexes(projection, generation)

    def ensure_indexes(self, projection: Projection, generation: int) -> None:
        """Create a generation's secondary indexes, if missing. A replay builds them once
        its rows are in: measured on 200,000 orders rows in SQLite, 1.9 s of upserts with
        them, 1.2 s without and 0.15 s to build them after."""
        with self.transaction() as connection:
            for row_type in projection.row_types:
                name = table_name(row_type.TABLE, generation)
                for columns in row_type.TABLE.indexes:
                    index = f"{name}__{'_'.join(columns)}"
                    connection.execute(
                        f"CREATE INDEX IF NOT EXISTS {index} ON {name} ({', '.join(columns)})"
                    )

    def drop_tables(self, projection: Projection, generation: int) -> None:
        """Drop a generation's row tables and offsets."""
        with self.transaction() as connection:
            for row_type in projection.row_types:
                connection.execute(f"DROP TABLE IF EXISTS {table_name(row_type.TABLE, generation)}")
            for meta in ("ecom_offsets", "ecom_generations"):
                connection.execute(
                    self.sql(f"DELETE FROM {meta} WHERE projection = ? AND generation = ?"),
                    (projection.name, generation),
                )

    def _create_table_sql(self, name: str, table: Table) -> str:
        for part in (name, *table.columns):
            if not _NAME.match(part):
                raise ValueError(f"unsafe SQL name {part!r}")
        columns = ", ".join(f"{column} {kind}" for column, kind in table.columns.items())
        return (
            f"CREATE TABLE IF NOT EXISTS {name} ({columns}, PRIMARY KEY ({', '.join(table.key)}))"
        )

    # -- heartbeats --------------------------------------------------------------------

    def beat(self, beat: Heartbeat) -> None:
        """Record what a runner says of itself now."""
        with self.transaction() as connection:
            connection.execute(self.sql(HEARTBEAT_UPSERT), astuple(beat))

    def heartbeats(self) -> list[Heartbeat]:
        rows = self.fetch("SELECT * FROM ecom_runners ORDER BY projection, instance")
        return [Heartbeat(**row) for row in rows]

    # -- generations -------------------------------------------------------------------

    def generations(self, projection: str) -> list[Generation]:
        rows = self.fetch(
            "SELECT * FROM ecom_generations WHERE projection = ? ORDER BY generation", (projection,)
        )
        return [
            Generation(
                r["projection"],
                r["generation"],
                r["state"],
                r["cluster_id"],
                json.loads(r["topic_ids"] or "{}"),
                r["until_spec"],
            )
            for r in rows
        ]

    def switched_at(self, projection: str) -> datetime | None:
        """Return when the view last switched generation (None: never)."""
        rows = self.fetch("SELECT switched_at FROM ecom_views WHERE projection = ?", (projection,))
        return datetime.fromisoformat(rows[0]["switched_at"]) if rows else None

    def active_generation(self, projection: str) -> int | None:
        rows = self.fetch("SELECT generation FROM ecom_views WHERE projection = ?", (projection,))
        return int(rows[0]["generation"]) if rows else None

    def create_generation(
        self,
        projection: Projection,
        generation: int,
        state: str,
        until_spec: str | None = None,
        indexed: bool = True,
    ) -> None:
        """Register a new generation and create its tables (see ensure_tables)."""
        self.ensure_tables(projection, generation, indexed)
        with self.transaction() as connection:
            connection.execute(
                self.sql(
                    "INSERT INTO ecom_generations (projection, generation, state, cluster_id, "
                    "topic_ids, until_spec, created_at) VALUES (?, ?, ?, NULL, '{}', ?, ?)"
                ),
                (projection.name, generation, state, until_spec, _now()),
            )
            if state == "active":
                self._point(connection, projection.name, generation)

    def set_state(self, projection: str, generation: int, state: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                self.sql(
                    "UPDATE ecom_generations SET state = ? WHERE projection = ? AND generation = ?"
                ),
                (state, projection, generation),
            )

    def bind(
        self, projection: str, generation: int, cluster_id: str, topic_ids: dict[str, str]
    ) -> None:
        """Record which cluster and topic incarnations a generation is built from."""
        with self.transaction() as connection:
            connection.execute(
                self.sql(
                    "UPDATE ecom_generations SET cluster_id = ?, topic_ids = ? "
                    "WHERE projection = ? AND generation = ?"
                ),
                (cluster_id, json.dumps(topic_ids, sort_keys=True), projection, generation),
            )

    def switch(self, projection: str, generation: int) -> int | None:
        """Point queries at another generation, in one transaction; return the old one."""
        with self.transaction() as connection:
            old = connection.execute(
                self.sql("SELECT generation FROM ecom_views WHERE projection = ?"), (projection,)
            ).fetchone()
            self._switch(connection, projection, generation)
        return int(old[0]) if old else None

    def switch_if_caught_up(
        self, projection: str, generation: int, stale: frozenset[str] = frozenset()
    ) -> tuple[int | None, dict[tuple[str, int], int]]:
        """Switch to `generation` only if it has read every partition at least as far as
        the active one, checked and switched in one transaction that holds off the live
        writer; the active one's offsets in `stale` topics (another incarnation) do not
        count. Return the old generation and where the active one is ahead (empty when
        it switched)."""
        with self.transaction(exclusive=True) as connection:
            old = connection.execute(
                self.sql("SELECT generation FROM ecom_views WHERE projection = ?"), (projection,)
            ).fetchone()
            if old is not None:
                live = self._read_offsets(connection, projection, int(old[0]), lock=True)
                shadow = self._read_offsets(connection, projection, generation)
                ahead = {
                    tp: n for tp, n in live.items() if tp[0] not in stale and n > shadow.get(tp, 0)
                }
                if ahead:
                    return int(old[0]), ahead
            self._switch(connection, projection, generation)
        return (int(old[0]) if old else None), {}

    def _read_offsets(
        self, connection: Connection, projection: str, generation: int, lock: bool = False
    ) -> dict[tuple[str, int], int]:
        statement = (
            "SELECT topic, kafka_partition, next_offset FROM ecom_offsets "
            "WHERE projection = ? AND generation = ? ORDER BY topic, kafka_partition"
            + (self.row_lock if lock else "")
        )
        rows = connection.execute(self.sql(statement), (projection, generation)).fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def _switch(self, connection: Connection, projection: str, generation: int) -> None:
        self._point(connection, projection, generation)
        connection.execute(
            self.sql(
                "UPDATE ecom_generations SET state = 'retired' "
                "WHERE projection = ? AND state = 'active'"
            ),
            (projection,),
        )
        connection.execute(
            self.sql(
                "UPDATE ecom_generations SET state = 'active' "
                "WHERE projection = ? AND generation = ?"
            ),
            (projection, generation),
        )

    def _point(self, connection: Connection, projection: str, generation: int) -> None:
        connection.execute(
            self.sql(
                "INSERT INTO ecom_views (projection, generation, switched_at) VALUES (?, ?, ?) "
                "ON CONFLICT (projection) DO UPDATE SET generation = excluded.generation, "
                "switched_at = excluded.switched_at"
            ),
            (projection, generation, _now()),
        )

    # -- rows and offsets ----------------------------------------------------------------

    def load(self, row_type: type[Row], generation: int, keys: Iterable[Key]) -> dict[Key, Row]:
        """Return the stored rows with these keys (single-column keys)."""
        wanted = sorted({key[0] for key in keys})
        name = table_name(row_type.TABLE, generation)
        column = row_type.TABLE.key[0]
        found: dict[Key, Row] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for record in self.fetch(f"SELECT * FROM {name} WHERE {column} IN ({marks})", chunk):
                row = row_type.from_record(record)
                found[row.key] = row
        return found

    def commit(
        self,
        projection: str,
        generation: int,
        rows: Sequence[Row],
        offsets: Sequence[OffsetRow],
        expected: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        """Write rows and the offsets they reflect in one transaction.

        With `expected` (the stored next offset of every partition the writer holds, as
        it last read or wrote them; 0 for none) the batch is a compare-and-set: if another
        writer moved any of them, nothing is written and Fenced is raised."""
        by_type: dict[type[Row], list[Row]] = {}
        for row in rows:
            by_type.setdefault(type(row), []).append(row)
        with self.transaction() as connection:
            if expected is None:
                connection.executemany(
                    self.sql(OFFSETS_UPSERT), _offset_params(projection, generation, offsets)
                )
            else:
                self._swap_offsets(connection, projection, generation, offsets, expected)
            for row_type, batch in by_type.items():
                self._upsert(connection, row_type, generation, batch)

    def _swap_offsets(
        self,
        connection: Connection,
        projection: str,
        generation: int,
        offsets: Sequence[OffsetRow],
        expected: Mapping[tuple[str, int], int],
    ) -> None:
        guarded = self.sql(OFFSETS_UPSERT + " WHERE ecom_offsets.next_offset = ?")
        ordered = sorted(offsets, key=lambda o: (o.topic, o.partition))  # one lock order
        for params, row in zip(
            _offset_params(projection, generation, ordered), ordered, strict=True
        ):
            before = expected.get((row.topic, row.partition), 0)
            cursor = connection.execute(guarded, (*params, before))
            if cursor.rowcount != 1:
                raise _fenced(projection, (row.topic, row.partition), before)
        # The partitions this runner holds but the batch did not touch count too: a row
        # can be written from two topics (a product's price from pricing and products).
        written = {(o.topic, o.partition) for o in offsets}
        stored = self._read_offsets(connection, projection, generation)
        for partition, before in sorted(expected.items()):
            if partition not in written and stored.get(partition, 0) != before:
                raise _fenced(projection, partition, before)

    def _upsert(
        self, connection: Connection, row_type: type[Row], generation: int, rows: list[Row]
    ) -> None:
        table = row_type.TABLE
        names = list(table.columns)
        statement = (
            f"INSERT INTO {table_name(table, generation)} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) {_on_conflict(table)}"
        )
        connection.executemany(self.sql(statement), [row.to_values() for row in rows])

    def offsets(self, projection: str, generation: int) -> dict[tuple[str, int], OffsetRow]:
        """Return the stored position of every partition a generation has read."""
        rows = self.fetch(
            "SELECT * FROM ecom_offsets WHERE projection = ? AND generation = ?",
            (projection, generation),
        )
        return {
            (r["topic"], r["kafka_partition"]): OffsetRow(
                r["topic"],
                r["kafka_partition"],
                r["next_offset"],
                r["high_watermark"],
                r["event_time"],
            )
            for r in rows
        }

    def checksum(self, projection: Projection, generation: int) -> str:
        """Return a digest of every row of a generation (equal views, equal digests).

        It digests the stored columns as they are: a row's columns are a function of the
        row (JSON with sorted keys, ISO-8601 times), so rebuilding rows first, as it
        once did, gave the same digest in three times as long."""
        digest = hashlib.sha256()
        for row_type in projection.row_types:
            name = table_name(row_type.TABLE, generation)
            order = ", ".join(row_type.TABLE.key)
            for record in self.fetch(f"SELECT * FROM {name} ORDER BY {order}"):
                digest.update(json.dumps(record, sort_keys=True, default=str).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Heartbeat:
    """A runner's word on itself: when, how far behind, since when caught up (lag at most
    the readiness threshold) and since when Kafka has not answered (None: it does)."""

    projection: str
    instance: str
    beat_at: float
    lag: int
    caught_up_at: float
    kafka_down_since: float | None


HEARTBEAT_UPSERT = (
    "INSERT INTO ecom_runners (projection, instance, beat_at, lag, caught_up_at, "
    "kafka_down_since) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (projection, instance) DO UPDATE "
    "SET beat_at = excluded.beat_at, lag = excluded.lag, caught_up_at = excluded.caught_up_at, "
    "kafka_down_since = excluded.kafka_down_since"
)

OFFSETS_UPSERT = (
    "INSERT INTO ecom_offsets (projection, generation, topic, kafka_partition, "
    "next_offset, high_watermark, event_time) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (projection, generation, topic, kafka_partition) DO UPDATE SET "
    "next_offset = excluded.next_offset, "
    "high_watermark = COALESCE(excluded.high_watermark, ecom_offsets.high_watermark), "
    "event_time = COALESCE(excluded.event_time, ecom_offsets.event_time)"
)


def _offset_params(
    projection: str, generation: int, offsets: Sequence[OffsetRow]
) -> list[tuple[Any, ...]]:
    return [
        (
            projection,
            generation,
            o.topic,
            o.partition,
            o.next_offset,
            o.high_watermark,
            o.event_time,
        )
        for o in offsets
    ]


def _fenced(projection: str, partition: tuple[str, int], before: int) -> Fenced:
    topic, number = partition
    return Fenced(
        f"{projection}: {topic}[{number}] was written by another runner since this one "
        f"read it at offset {before}"
    )


def _on_conflict(table: Table) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in table.columns if c not in table.key)
    return f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"


_CONNECTIONS = itertools.count()


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SqliteStore(Store):
    """SQLite in WAL mode: readers never wait for the writer."""

    dialect = "sqlite"

    def __init__(self, url: str, create: bool = True, folders: bool = True) -> None:
        self.path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        self.create = create
        self.folders = create and folders
        super().__init__(url)

    def _connect(self) -> sqlite3.Connection:
        if not self.create and not self.path.is_file():
            raise StoreError(
                f"cannot open the view database {self.path}: there is none (the projections "
                "make it: `ecom projections run`; or check --store / ECOM_STORE)"
            )
        try:
            if self.folders:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.parent.is_dir():
                raise StoreError(
                    f"cannot open the view database {self.path}: there is no folder "
                    f"{self.path.parent} (check --store / ECOM_STORE)"
                )
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL survives a kill
            connection.execute("PRAGMA busy_timeout = 30000")
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the view database {self.path}: {error}") from error
        return connection

    @contextmanager
    def replay_lock(self, projection: str) -> Iterator[None]:
        # A file of its own: closing any descriptor of the database would drop SQLite's
        # own locks in this process, and another could then checkpoint away its commits.
        lock = self.path.with_name(f"{self.path.name}.replay-{projection}.lock")
        try:
            held = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StoreError(f"cannot open the replay lock {lock}: {error.strerror}") from error
        try:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReplayRunning(projection, str(self.path)) from None
            yield
        finally:
            os.close(held)

    def version(self, read: Callable[[str, Sequence[Any]], list[dict[str, Any]]]) -> Any:
        # data_version moves when another connection commits, total_changes when this one
        # writes; their numbers are this connection's own, hence the serial beside them.
        version = read("PRAGMA data_version", [])[0]["data_version"]
        return self._local.serial, version, self.connection.total_changes

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        self.connection.execute("PRAGMA synchronous = OFF")
        try:
            yield
        finally:
            self.connection.execute("PRAGMA synchronous = NORMAL")

    @contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Connection]:
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


class PostgresStore(Store):
    """PostgreSQL through psycopg 3."""

    dialect = "postgres"
    row_lock = " FOR UPDATE"

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to the view database: {error}".strip()) from error

    @contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Connection]:
        connection = self.connection  # exclusive: the caller locks rows (row_lock)
        with connection.transaction(), connection.cursor() as cursor:
            yield cursor

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    @contextmanager
    def replay_lock(self, projection: str) -> Iterator[None]:
        # An advisory lock on a connection of its own: it ends with the session.
        key = zlib.crc32(projection.encode()) - 2**31  # PostgreSQL's int4
        held = self._connect()
        try:
            row = held.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (REPLAY_LOCKS, key)
            ).fetchone()
            if not row[0]:
                raise ReplayRunning(projection, "this database")
            yield
        finally:
            held.close()

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        self.connection.execute("SET synchronous_commit = off")
        try:
            yield
        finally:
            self.connection.execute("SET synchronous_commit = on")

    def _begin_snapshot(self, connection: Connection) -> None:
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def _upsert(
        self, connection: Connection, row_type: type[Row], generation: int, rows: list[Row]
    ) -> None:
        """A big batch goes through COPY into a staging table and one INSERT ... SELECT:
        measured, 80,000 upserts took 1.2 s instead of 2.5 s, and a tenth of the CPU."""
        if len(rows) < COPY_FROM:
            super()._upsert(connection, row_type, generation, rows)
            return
        table = row_type.TABLE
        target = table_name(table, generation)
        stage, columns = f"stage_{target}", ", ".join(table.columns)
        connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {target}) ON COMMIT DELETE ROWS"
        )
        copying: Any = connection  # a psycopg cursor
        with copying.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
            for row in {row.key: row for row in rows}.values():  # the last one of a key wins
                copy.write_row(row.to_values())
        connection.execute(
            f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage} {_on_conflict(table)}"
        )


class ReplayRunning(BadInput):
    """Another replay of the projection holds its lock."""

    def __init__(self, projection: str, where: str) -> None:
        super().__init__(
            f"a replay of {projection} is running on {where}: wait for it to end, or stop it first"
        )


def open_store(url: str, create: bool = True, folders: bool = True) -> Store:
    """Open the view database a URL names: sqlite:///path or postgresql://... Unless
    `create`, a SQLite file that does not exist is an error, not a new empty view (for
    commands that only read); unless `folders`, so is a folder that does not exist (for a
    reader that may start before the writers: a mistyped path is not a new view)."""
    if url.startswith("sqlite:"):
        return SqliteStore(url, create, folders)
    if url.startswith(("postgresql:", "postgres:")):
        return PostgresStore(url)
    raise BadInput(
        f"unknown store URL {redact(url)!r}; use sqlite:///path/view.db or postgresql://..."
    )
