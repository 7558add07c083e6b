"""The engine, the transaction rules and the SQL helpers shared by the storage modules.

SQLite (the default) runs in WAL mode with ``synchronous=NORMAL`` and a busy timeout, and the
driver's own transaction handling is switched off so that SQLAlchemy's ``BEGIN`` is real:
write transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken up front, never
upgraded half-way) and run one at a time under a process-wide lock; WAL checkpoints happen on a
background thread (``Checkpointer``), not inside a commit. PostgreSQL uses the same statements;
only the flavour of ``INSERT … ON CONFLICT DO NOTHING`` is picked by dialect. Nothing here
changes the ``sqlite3`` module for the rest of the process (no global adapters).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from . import decimals, schema

__all__ = [
    "IN_CHUNK",
    "Database",
    "bulk_insert_ignore",
    "chunked",
    "insert_ignore",
    "insert_many",
    "json_text",
    "max_seq",
]

#: largest IN (...) list per query; well under every SQLite build's variable limit
IN_CHUNK = 500

T = TypeVar("T")


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: WAL size (pages) at which a commit checkpoints by itself, should the Checkpointer lag
BACKSTOP_PAGES = 20_000


class Checkpointer:
    """Copies the SQLite write-ahead log into the database file on a background thread.

    By default the commit that grows the WAL past 1,000 pages does this copy (and its fsync)
    itself, inside a request. Here each write only pokes this thread, which runs a ``PASSIVE``
    checkpoint (never blocks readers or the writer) on its own connection, at most every
    ``interval`` seconds; the thread ends when idle and starts again on the next poke.
    Durability is unchanged: a transaction is durable once committed to the WAL.
    """

    def __init__(self, engine: Engine, interval: float = 1.0, idle: float = 5.0) -> None:
        self._engine = engine
        self._interval = interval
        self._idle = idle
        self._wake = threading.Event()
        self._stop = threading.Event()  # cuts the pause between checkpoints short
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def poke(self) -> None:
        """A write committed: checkpoint soon."""
        self._wake.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._run, name="drip-checkpoint", daemon=True
                    )
                    self._thread.start()

    def close(self) -> None:
        """Stop the thread (after a last checkpoint)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    def _run(self) -> None:
        dialect = self._engine.dialect
        cargs, cparams = dialect.create_connect_args(self._engine.url)
        conn = dialect.loaded_dbapi.connect(*cargs, **cparams)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            while True:
                self._wake.wait(self._idle)
                with self._lock:
                    if self._closed or not self._wake.is_set():
                        self._thread = None
                        if not self._closed:
                            return  # idle: a later poke starts a new thread
                self._wake.clear()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                if self._closed:
                    return
                self._stop.wait(self._interval)
        except Exception:  # a failed checkpoint is retried by the next poke (or a commit)
            with self._lock:
                self._thread = None
        finally:
            conn.close()


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if in_memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        decimals.register_sqlite(dbapi_conn)  # exact sums in the rollups
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # commits leave checkpoints to the Checkpointer thread; this is only a backstop
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("drip_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Database:
    """One database: an engine plus the rule that writes happen one at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        if make_url(url).get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(url)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer anyway; queueing here is cheaper than busy-waiting in SQLite.
        self._write_lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None
        if self.dialect == "sqlite" and make_url(url).database not in (None, "", ":memory:"):
            self._checkpointer = Checkpointer(self.engine)

    def create_tables(self) -> None:
        """Create missing tables and indexes (idempotent)."""
        schema.metadata.create_all(self.engine)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._write_lock, self.engine.connect() as conn:
            conn.execution_options(drip_write=True)
            with conn.begin():
                yield conn
        if self._checkpointer is not None:
            self._checkpointer.poke()

    def dispose(self) -> None:
        """Stop the checkpoints, close every pooled connection."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()


def insert_ignore(dialect: str, table: Table) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for the dialect (any unique index counts)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


#: most parameters bound in one statement (SQLite before 3.32 allows 999)
MAX_PARAMS = 999
#: most rows in one multi-row ``INSERT``
MAX_ROWS = 128

#: (SQL, how parameters are laid out) per dialect, table, columns and row count
_compiled: dict[tuple[str, str, tuple[str, ...], int], tuple[str, _Layout]] = {}
_nullable: dict[str, frozenset[str]] = {}
#: positional parameters in row order (None), reordered (positions), or named (the names)
_Layout = tuple[int, ...] | list[str] | None


def _statement(
    conn: Connection, table: Table, columns: tuple[str, ...], nrows: int
) -> tuple[str, _Layout]:
    """(SQL, layout) of an ``INSERT … ON CONFLICT DO NOTHING`` of ``nrows`` rows (one
    ``VALUES`` list each). The layout says how to turn the rows' values laid end to end into
    the statement's parameters (named ones are ``p{row}_{column}``)."""
    key = (conn.dialect.name, table.name, columns, nrows)
    found = _compiled.get(key)
    if found is None:
        width = len(columns)
        names = [f"p{r}_{i}" for r in range(nrows) for i in range(width)]
        values: list[dict[str, Any]] = [
            {name: bindparam(names[r * width + i]) for i, name in enumerate(columns)}
            for r in range(nrows)
        ]
        compiled = (
            insert_ignore(conn.dialect.name, table).values(values).compile(dialect=conn.dialect)
        )
        layout: _Layout = names
        if conn.dialect.paramstyle in ("qmark", "numeric", "format"):
            at = {name: i for i, name in enumerate(names)}
            order = tuple(at[name] for name in compiled.positiontup or ())
            layout = None if order == tuple(range(len(names))) else order
        found = _compiled[key] = (str(compiled), layout)
    return found


def _droppable(table: Table) -> frozenset[str]:
    """Columns that are NULL when left out of an INSERT: nullable, no default of any kind."""
    found = _nullable.get(table.name)
    if found is None:
        found = _nullable[table.name] = frozenset(
            c.name
            for c in table.columns
            if c.nullable and not c.primary_key and c.default is None and c.server_default is None
        )
    return found


def _without_null_columns(
    table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> tuple[tuple[str, ...], Sequence[tuple[Any, ...]]]:
    """Leave out the columns that are NULL in every row: fewer values to bind, and no ``None``
    at all in a typical ingest batch (binding ``None`` is the sqlite3 module's slow path)."""
    droppable = _droppable(table)
    if not droppable.intersection(columns):
        return columns, rows
    transposed = list(zip(*rows, strict=True))
    size = len(rows)
    keep = [
        i
        for i, name in enumerate(columns)
        if name not in droppable or transposed[i].count(None) != size
    ]
    if len(keep) == len(columns):
        return columns, rows
    return tuple(columns[i] for i in keep), list(zip(*(transposed[i] for i in keep), strict=True))


def _execute(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    groups: Sequence[Sequence[tuple[Any, ...]]],
) -> int:
    """One multi-row INSERT per group (all of the same size), straight on the driver's cursor
    (inside the connection's transaction); how many rows went in."""
    sql, layout = _statement(conn, table, columns, len(groups[0]))
    params: list[Any] = [tuple(chain.from_iterable(group)) for group in groups]
    if isinstance(layout, list):
        params = [dict(zip(layout, flat, strict=True)) for flat in params]
    elif layout is not None:
        params = [tuple([flat[i] for i in layout]) for flat in params]
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql, params)
        return max(cursor.rowcount, 0)
    finally:
        cursor.close()


def insert_many(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    drop_nulls: bool = True,
) -> int:
    """Insert rows given as tuples in ``columns`` order, in that order, skipping those that
    hit a unique index; returns how many went in.

    The hot path of ingestion, so it bypasses SQLAlchemy's per-row parameter processing: the
    statement is built with Core and compiled once per column set and row count, then handed
    to the driver. Rows go in up to ``MAX_ROWS`` per statement (a multi-row ``VALUES`` list:
    far fewer statement executions than one per row); a remainder goes in power-of-two
    pieces, so few statements are ever compiled. Columns that are NULL in every row are left
    out (unless ``drop_nulls`` is false: the caller knows there are none worth the look).
    Values must be ready for the driver (JSON columns as text).
    """
    if not rows:
        return 0
    if drop_nulls:
        columns, rows = _without_null_columns(table, columns, rows)
    per = max(1, min(MAX_ROWS, MAX_PARAMS // len(columns)))
    full = len(rows) // per * per
    count = 0
    if full:
        count += _execute(conn, table, columns, [rows[i : i + per] for i in range(0, full, per)])
    start, rest = full, len(rows) - full
    while rest:
        piece = 1 << (rest.bit_length() - 1)
        count += _execute(conn, table, columns, [rows[start : start + piece]])
        start, rest = start + piece, rest - piece
    return count


_max_seq_sql: dict[tuple[str, str], str] = {}


def max_seq(conn: Connection, table: Table) -> int:
    """The table's largest ``seq`` (0 when empty), straight on the driver's cursor: the ingest
    path asks once per batch, and SQLAlchemy's execution costs 20x the query here."""
    key = (conn.dialect.name, table.name)
    sql = _max_seq_sql.get(key)
    if sql is None:
        sql = _max_seq_sql[key] = str(select(func.max(table.c.seq)).compile(dialect=conn.dialect))
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return int(row[0] or 0) if row else 0


def json_text(value: Any) -> str | None:
    """A JSON column's value as the driver takes it (None stays NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def bulk_insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """:func:`insert_many` for rows given as dicts (all with the same keys)."""
    if not rows:
        return 0
    columns = tuple(rows[0])
    json_at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
    values = []
    for row in rows:
        tup = list(row.values())
        for i in json_at:
            tup[i] = json_text(tup[i])
        values.append(tuple(tup))
    return insert_many(conn, table, columns, values)
