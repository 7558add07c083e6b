"""Bulk writes: multi-row ``INSERT … ON CONFLICT DO NOTHING`` straight on the driver's cursor.

The hot path of ingestion. Statements are built with SQLAlchemy Core and compiled once per
dialect, table, column set and row count, then handed to the driver with ``executemany``.
Which rows went in is known without trusting driver row counts where they lie: PostgreSQL
takes a whole batch in one ``COPY`` or, when that hits a duplicate (or for a few rows), one
``INSERT … SELECT FROM unnest(arrays)`` with an exact count (``postgres.insert_rows``);
SQLite, whose writes are serialised by ``BEGIN IMMEDIATE``, counts rows and, only when the
count falls short, reads back the rows above the table's largest ``seq`` taken before the
insert.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import JSON, ClauseElement, Connection, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from . import postgres

__all__ = [
    "IN_CHUNK",
    "bulk_insert_ignore",
    "bulk_insert_new",
    "chunked",
    "insert_ignore",
    "insert_many",
    "insert_new",
    "json_text",
    "lock_names",
    "max_seq",
    "query_rows",
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


def lock_names(conn: Connection, names: Sequence[str]) -> None:
    """Make writers of the same ``names`` take turns until this transaction ends: an advisory
    lock per name on PostgreSQL; nothing on SQLite, where every write transaction does."""
    if conn.dialect.name == "postgresql":
        postgres.lock_names(conn, names)


def _returns_ids(conn: Connection) -> bool:
    """Whether bulk inserts on this connection go through ``postgres.insert_rows``."""
    return conn.dialect.name == "postgresql"


#: most parameters bound in one statement (SQLite before 3.32 allows 999, later 32,766)
MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
#: most rows in one multi-row ``INSERT``: 500 rows cost ~7% less CPU per row than 99 (fewer
#: statement steps); more gains nothing measurable
MAX_ROWS = 500

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
    if found is None and nrows > 1 and conn.dialect.paramstyle == "qmark":
        found = _repeated(conn, table, columns, nrows)
    if found is None:
        width = len(columns)
        names = [f"p{r}_{i}" for r in range(nrows) for i in range(width)]
        values: list[dict[str, Any]] = [
            {name: bindparam(names[r * width + i]) for i, name in enumerate(columns)}
            for r in range(nrows)
        ]
        statement = insert_ignore(conn.dialect.name, table).values(values)
        compiled = statement.compile(dialect=conn.dialect)
        layout: _Layout = names
        if conn.dialect.paramstyle in ("qmark", "numeric", "format"):
            at = {name: i for i, name in enumerate(names)}
            order = tuple(at[name] for name in compiled.positiontup or ())
            layout = None if order == tuple(range(len(names))) else order
        found = _compiled[key] = (str(compiled), layout)
    return found


def _repeated(
    conn: Connection, table: Table, columns: tuple[str, ...], nrows: int
) -> tuple[str, _Layout] | None:
    """The ``nrows`` statement made from the one-row one by repeating its ``VALUES`` list
    (SQLite's positional ``?``: compiling 500 rows' bind parameters costs ~75 ms per column
    set), or None when the one-row SQL is not of that plain shape."""
    one, layout = _statement(conn, table, columns, 1)
    group = "(" + ", ".join(["?"] * len(columns)) + ")"
    if layout is not None or one.count(f" VALUES {group}") != 1 or one.count("?") != len(columns):
        return None
    found = _compiled[(conn.dialect.name, table.name, columns, nrows)] = (
        one.replace(f" VALUES {group}", " VALUES " + ", ".join([group] * nrows)),
        None,
    )
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
    (inside the connection's transaction); how many rows went in (SQLite)."""
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


def _max_params(conn: Connection) -> int:
    """``MAX_PARAMS``, or less when this SQLite library was built with a lower limit (Python
    3.11+ can ask it)."""
    getlimit = getattr(conn.connection.dbapi_connection, "getlimit", None)
    which = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)
    if getlimit is None or which is None:
        return MAX_PARAMS
    return min(MAX_PARAMS, int(getlimit(which)))


def _insert_rows(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    drop_nulls: bool,
) -> int:
    if not rows:
        return 0
    if drop_nulls:
        columns, rows = _without_null_columns(table, columns, rows)
    per = max(1, min(MAX_ROWS, _max_params(conn) // len(columns)))
    full = len(rows) // per * per
    count = 0
    if full:
        groups = [rows[i : i + per] for i in range(0, full, per)]
        count += _execute(conn, table, columns, groups)
    start, rest = full, len(rows) - full
    while rest:
        piece = 1 << (rest.bit_length() - 1)
        count += _execute(conn, table, columns, [rows[start : start + piece]])
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

    SQLite: rows go in up to ``MAX_ROWS`` per statement (a multi-row ``VALUES`` list: far fewer
    statement executions than one per row); a remainder goes in power-of-two pieces, so few
    statements are ever compiled. PostgreSQL: one ``unnest`` statement for all of them.
    Columns that are NULL in every row are left out (unless ``drop_nulls`` is false: the caller
    knows there are none worth the look). Values must be ready for the driver (JSON as text).
    """
    if not rows:
        return 0
    if _returns_ids(conn):
        went_in = insert_new(conn, table, columns, 0, rows, drop_nulls=drop_nulls)
        return len(rows) if went_in is None else len(went_in)
    return _insert_rows(conn, table, columns, rows, drop_nulls)


def insert_new(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    account_id: int,
    rows: Sequence[tuple[Any, ...]],
    *,
    drop_nulls: bool = True,
) -> set[str] | None:
    """:func:`insert_many` for rows whose second column is the public ``id`` (and first the
    account): None when every row went in, else the ids of those that did (the rest hit a
    unique index)."""
    if not rows:
        return None
    if drop_nulls:
        columns, rows = _without_null_columns(table, columns, rows)
    if _returns_ids(conn):
        return postgres.insert_rows(conn, table, columns, rows)
    before = max_seq(conn, table)
    if _insert_rows(conn, table, columns, rows, False) == len(rows):
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


#: (SQL, bind parameter names in the driver's order, positional?) per dialect and query key
_queries: dict[tuple[Any, ...], tuple[str, tuple[str, ...], bool]] = {}


def query_rows(
    conn: Connection,
    key: tuple[Any, ...],
    build: Callable[[], ClauseElement],
    values: Mapping[str, Any],
) -> list[Any]:
    """The rows of a query compiled once per dialect and ``key`` (``build()`` makes it, with
    bind parameters named as the keys of ``values``), run straight on the driver's cursor: for
    the small look-ups of every ingest batch, SQLAlchemy's work per execution costs more than
    the query itself. Values are passed to the driver as they are (no type processing)."""
    full_key = (conn.dialect.name, *key)
    found = _queries.get(full_key)
    if found is None:
        compiled = build().compile(dialect=conn.dialect)
        positional = conn.dialect.paramstyle in ("qmark", "numeric", "format")
        if len(_queries) >= 512:  # bounded: keys are shapes, but never let them pile up
            _queries.clear()
        found = _queries[full_key] = (
            str(compiled),
            tuple(getattr(compiled, "positiontup", None) or ()),
            positional,
        )
    sql, order, positional = found
    params: Any = tuple([values[name] for name in order]) if positional else dict(values)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def json_text(value: Any) -> str | None:
    """A JSON column's value as the driver takes it (None stays NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _as_tuples(
    table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Rows given as dicts (all with the same keys) as (columns, tuples), JSON as text."""
    columns = tuple(rows[0])
    json_at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
    values = []
    for row in rows:
        tup = list(row.values())
        for i in json_at:
            tup[i] = json_text(tup[i])
        values.append(tuple(tup))
    return columns, values


def bulk_insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """:func:`insert_many` for rows given as dicts (all with the same keys)."""
    if not rows:
        return 0
    return insert_many(conn, table, *_as_tuples(table, rows))


def bulk_insert_new(
    conn: Connection, table: Table, account_id: int, rows: Sequence[Mapping[str, Any]]
) -> set[str] | None:
    """:func:`insert_new` for rows given as dicts (all with the same keys, ``id`` among them):
    None when every row went in, else the ids of those that did."""
    if not rows:
        return None
    columns, values = _as_tuples(table, rows)
    return insert_new(conn, table, columns, account_id, values)
