"""Bulk writes: multi-row ``INSERT … ON CONFLICT DO NOTHING`` straight on the driver's cursor.

The hot path of ingestion. Statements are built with SQLAlchemy Core and compiled once per
dialect, table, column set and row count, then handed to the driver with ``executemany``.
Which rows went in is known without trusting driver row counts where they lie: PostgreSQL
answers with ``RETURNING id`` (and psycopg sends the statements in one pipeline); SQLite, whose
writes are serialised by ``BEGIN IMMEDIATE``, counts rows and, only when the count falls short,
reads back the rows above the table's largest ``seq`` taken before the insert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

__all__ = [
    "IN_CHUNK",
    "bulk_insert_ignore",
    "chunked",
    "insert_ignore",
    "insert_many",
    "insert_new",
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


def insert_ignore(dialect: str, table: Table) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for the dialect (any unique index counts)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def _returns_ids(conn: Connection) -> bool:
    """Whether bulk inserts on this connection use ``RETURNING id`` (PostgreSQL)."""
    return conn.dialect.name == "postgresql"


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
        statement = insert_ignore(conn.dialect.name, table).values(values)
        if _returns_ids(conn):
            statement = statement.returning(table.c.id)
        compiled = statement.compile(dialect=conn.dialect)
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
    went_in: list[str] | None,
) -> int:
    """One multi-row INSERT per group (all of the same size), straight on the driver's cursor
    (inside the connection's transaction); how many rows went in. On PostgreSQL the ids of the
    rows that went in are added to ``went_in``."""
    sql, layout = _statement(conn, table, columns, len(groups[0]))
    params: list[Any] = [tuple(chain.from_iterable(group)) for group in groups]
    if isinstance(layout, list):
        params = [dict(zip(layout, flat, strict=True)) for flat in params]
    elif layout is not None:
        params = [tuple([flat[i] for i in layout]) for flat in params]
    cursor = conn.connection.cursor()
    try:
        if not _returns_ids(conn):
            cursor.executemany(sql, params)
            return max(cursor.rowcount, 0)
        ids: list[str] = []
        cursor.executemany(sql, params, returning=True)  # type: ignore[call-arg]
        while True:
            ids.extend(row[0] for row in cursor.fetchall())
            if not cursor.nextset():
                break
        if went_in is not None:
            went_in.extend(ids)
        return len(ids)
    finally:
        cursor.close()


def _insert_rows(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    drop_nulls: bool,
    went_in: list[str] | None,
) -> int:
    if not rows:
        return 0
    if drop_nulls:
        columns, rows = _without_null_columns(table, columns, rows)
    per = max(1, min(MAX_ROWS, MAX_PARAMS // len(columns)))
    full = len(rows) // per * per
    count = 0
    if full:
        groups = [rows[i : i + per] for i in range(0, full, per)]
        count += _execute(conn, table, columns, groups, went_in)
    start, rest = full, len(rows) - full
    while rest:
        piece = 1 << (rest.bit_length() - 1)
        count += _execute(conn, table, columns, [rows[start : start + piece]], went_in)
        start, rest = start + piece, rest - piece
    return count


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

    Rows go in up to ``MAX_ROWS`` per statement (a multi-row ``VALUES`` list: far fewer
    statement executions than one per row); a remainder goes in power-of-two pieces, so few
    statements are ever compiled. Columns that are NULL in every row are left out (unless
    ``drop_nulls`` is false: the caller knows there are none worth the look). Values must be
    ready for the driver (JSON columns as text).
    """
    return _insert_rows(conn, table, columns, rows, drop_nulls, None)


def insert_new(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    account_id: int,
    rows: Sequence[tuple[Any, ...]],
    *,
    drop_nulls: bool = True,
) -> set[str] | None:
    """:func:`insert_many` for rows whose second column is the public ``id``: None when every
    row went in, else the ids of those that did (the rest hit a unique index)."""
    if not rows:
        return None
    if _returns_ids(conn):
        ids: list[str] = []
        count = _insert_rows(conn, table, columns, rows, drop_nulls, ids)
        return None if count == len(rows) else set(ids)
    before = max_seq(conn, table)
    if _insert_rows(conn, table, columns, rows, drop_nulls, None) == len(rows):
        return None
    return set(
        conn.execute(
            select(table.c.id).where(table.c.account_id == account_id, table.c.seq > before)
        ).scalars()
    )


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
