"""The engine, the transaction rules and the SQL helpers shared by the storage modules.

SQLite (the default) runs in WAL mode with ``synchronous=NORMAL`` and a busy timeout, and the
driver's own transaction handling is switched off so that SQLAlchemy's ``BEGIN`` is real:
write transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken up front, never
upgraded half-way) and run one at a time under a process-wide lock. PostgreSQL uses the same
statements; only the flavour of ``INSERT … ON CONFLICT DO NOTHING`` is picked by dialect.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from . import schema

__all__ = [
    "IN_CHUNK",
    "Database",
    "bulk_insert_ignore",
    "chunked",
    "insert_ignore",
    "insert_many",
    "json_text",
]

#: largest IN (...) list per query; well under every SQLite build's variable limit
IN_CHUNK = 500

T = TypeVar("T")


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fast_null_binding() -> None:
    """Make the sqlite3 module bind ``None`` through a registered adapter.

    Without one, every ``None`` parameter goes through the module's failed-adaptation path
    (two attribute lookups that raise and are swallowed): ~1 µs each, a third of the cost of a
    typical event insert. The adapter returns ``None`` itself, so what is stored is unchanged.
    """
    sqlite3.register_adapter(type(None), _none)


def _none(_value: None) -> None:
    return None


def _sqlite_engine(url: str) -> Engine:
    _fast_null_binding()
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
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
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

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def insert_ignore(dialect: str, table: Table) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for the dialect (any unique index counts)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


_compiled: dict[tuple[str, str, tuple[str, ...]], tuple[str, tuple[int, ...] | None]] = {}


def _statement(
    conn: Connection, table: Table, columns: tuple[str, ...]
) -> tuple[str, tuple[int, ...] | None]:
    """(SQL, order): ``order`` maps the compiled positional parameters to ``columns``; None
    for named parameters (the driver then takes dicts)."""
    key = (conn.dialect.name, table.name, columns)
    found = _compiled.get(key)
    if found is None:
        compiled = insert_ignore(conn.dialect.name, table).compile(
            dialect=conn.dialect, column_keys=list(columns)
        )
        order = None
        if conn.dialect.paramstyle in ("qmark", "numeric", "format"):
            order = tuple(columns.index(name) for name in compiled.positiontup or ())
        found = _compiled[key] = (str(compiled), order)
    return found


def insert_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> int:
    """Insert rows given as tuples in ``columns`` order, skipping those that hit a unique
    index; returns how many went in.

    The hot path of ingestion, so it bypasses SQLAlchemy's per-row parameter processing: the
    statement is built with Core and compiled once per column set, then handed to the driver's
    ``executemany``. Values must be ready for the driver (JSON columns as text).
    """
    if not rows:
        return 0
    sql, order = _statement(conn, table, columns)
    params: Sequence[Any]
    if order is None:
        params = [dict(zip(columns, row, strict=True)) for row in rows]
    elif order == tuple(range(len(columns))):
        params = rows
    else:
        params = [tuple(row[i] for i in order) for row in rows]
    return max(conn.exec_driver_sql(sql, params).rowcount, 0)


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
