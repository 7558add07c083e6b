"""PostgreSQL-only parts: the psycopg 3 engine, the migration lock and the bulk insert.

PostgreSQL needs no process-wide write lock: row locks and unique indexes keep concurrent
writers correct, so writes from several threads and worker processes run side by side.

Bulk inserts (:func:`insert_rows`) go in with ``COPY … (FORMAT BINARY)`` inside a savepoint:
no statement to plan, rows formatted by psycopg's C code, and the server's cheapest insert
(batched heap writes, no speculative insertion). ``COPY`` has no ``ON CONFLICT``: when a row
hits a unique index the whole ``COPY`` fails, the savepoint is rolled back and the batch goes in
again with ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING``, which skips the
duplicates. So new rows (nearly every batch) take the fast path and a retried batch the exact
one; either way each row is stored once. Measured on 5,000-row batches of the SDK's events
(client CPU + server CPU per row): unnest 2.0 + 13.7 µs, ``COPY`` in a savepoint 0.4 + 10.1 µs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Float,
    Integer,
    Table,
    create_engine,
    text,
)
from sqlalchemy.engine import URL, make_url

__all__ = [
    "COPY_MIN_ROWS",
    "MIGRATION_LOCK_KEY",
    "create",
    "driver_url",
    "insert_copy",
    "insert_rows",
    "insert_unnest",
    "lock_names",
    "migration_lock",
]

#: the advisory lock id held while migrating (any constant; "drip" in ASCII)
MIGRATION_LOCK_KEY = 0x64726970


def driver_url(url: str) -> URL:
    """``postgresql://`` and ``postgres://`` URLs with the psycopg 3 driver named."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create(url: str) -> Engine:
    """An engine over psycopg 3 (``pip install "drip-sdk[postgres]"``)."""
    return create_engine(driver_url(url), pool_pre_ping=True, pool_size=10, max_overflow=20)


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding a session-level advisory lock: one process migrates at a time, the
    others wait and then find the schema at head. The lock ends with the session even if the
    process dies half-way."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            yield conn
            conn.commit()  # what the caller did in the transaction it began
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()


def lock_names(conn: Connection, names: Sequence[str]) -> None:
    """Hold a transaction-level advisory lock per name until this transaction ends (in sorted
    order, so two transactions locking the same names never deadlock): writers of the same
    thing take turns where no unique index makes them."""
    for name in sorted(set(names)):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), {"n": name})


_ARRAY_TYPES = ((BigInteger, "int8"), (Integer, "int4"), (Float, "float8"), (Boolean, "bool"))
_unnest_sql: dict[tuple[str, tuple[str, ...]], str] = {}
#: (COPY statement, column types) per table and column set
_copy_sql: dict[tuple[str, tuple[str, ...]], tuple[str, list[str]]] = {}
#: batches smaller than this skip COPY: its savepoint costs two more round trips, which a few
#: rows do not win back
COPY_MIN_ROWS = 32


def _array_type(table: Table, name: str) -> str:
    kind = table.c[name].type
    for base, pg in _ARRAY_TYPES:
        if isinstance(kind, base):
            return pg
    return "text"  # strings, and JSON sent as its text (cast in the SELECT)


def _unnest_statement(table: Table, columns: tuple[str, ...]) -> str:
    key = (table.name, columns)
    found = _unnest_sql.get(key)
    if found is None:
        names = ", ".join(f'"{c}"' for c in columns)
        # %b: arrays in binary, without per-element quoting (text arrays cost a regex each)
        arrays = ", ".join(f"%b::{_array_type(table, c)}[]" for c in columns)
        picks = ", ".join(
            f'"{c}"::json' if isinstance(table.c[c].type, JSON) else f'"{c}"' for c in columns
        )
        found = _unnest_sql[key] = (
            f'INSERT INTO "{table.name}" ({names}) '
            f"SELECT {picks} FROM unnest({arrays}) WITH ORDINALITY AS t({names}, ord) "
            "ORDER BY ord ON CONFLICT DO NOTHING"
        )
    return found


def insert_rows(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
) -> set[str] | None:
    """Insert rows (tuples in ``columns`` order, with ``account_id`` and ``id``), in order,
    skipping those that hit a unique index: ``COPY`` for a batch of ``COPY_MIN_ROWS`` or more
    (:func:`insert_copy`), one ``unnest`` statement otherwise. None when every row went in,
    else the ids of those that did."""
    if len(rows) >= COPY_MIN_ROWS and insert_copy(conn, table, columns, rows):
        return None
    return insert_unnest(conn, table, columns, rows)


def _copy_statement(table: Table, columns: tuple[str, ...]) -> tuple[str, list[str]]:
    key = (table.name, columns)
    found = _copy_sql.get(key)
    if found is None:
        names = ", ".join(f'"{c}"' for c in columns)
        # a JSON value goes as its text: json's binary form is its text
        found = _copy_sql[key] = (
            f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)',
            [_array_type(table, c) for c in columns],
        )
    return found


def insert_copy(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
) -> bool:
    """``COPY`` the rows in, in order, inside a savepoint: True when all went in; False when
    one hit a unique index, and then none did (the savepoint is rolled back)."""
    from psycopg.errors import UniqueViolation  # psycopg is the [postgres] extra

    sql, types = _copy_statement(table, columns)
    cursor = conn.connection.cursor()
    try:
        cursor.execute("SAVEPOINT drip_copy")
        try:
            with cursor.copy(sql) as copy:
                copy.set_types(types)
                write = copy.write_row
                for row in rows:
                    write(row)
        except UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT drip_copy")
            went_in = False
        else:
            went_in = True
        # released either way: later rows of this transaction then carry its own xid, which
        # insert_unnest's read-back of the rows that went in relies on
        cursor.execute("RELEASE SAVEPOINT drip_copy")
        return went_in
    finally:
        cursor.close()


def insert_unnest(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
) -> set[str] | None:
    """Insert rows (tuples in ``columns`` order, with ``account_id`` and ``id``) in one statement:
    each column goes as one array parameter and ``unnest`` turns them back into rows, so the
    server plans one statement per batch however many rows it holds; rows that hit a unique
    index are skipped. None when every row went in, else the ids of those that did."""
    columns_data = [list(values) for values in zip(*rows, strict=True)]
    cursor = conn.connection.cursor()
    try:
        # the command tag's count is exact for one statement (unlike executemany's rowcount)
        cursor.execute(_unnest_statement(table, columns), columns_data)
        if cursor.rowcount == len(rows):
            return None
        # some were duplicates (rare): the rows this transaction wrote are the ones that went in
        cursor.execute(
            f'SELECT id FROM "{table.name}" WHERE account_id = %s AND id = ANY(%s) '
            "AND xmin = pg_current_xact_id()::xid",
            (rows[0][columns.index("account_id")], columns_data[columns.index("id")]),
        )
        return {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()
