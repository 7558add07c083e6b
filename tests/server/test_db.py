"""The SQL helpers under ingestion: multi-row inserts, NULL columns left out, the background
WAL checkpoints, and no process-wide change to the sqlite3 module."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from drip.server.storage.bulk import insert_many, max_seq
from drip.server.storage.database import Database
from drip.server.storage.schema import events

TS = "2025-01-01T00:00:00.000000Z"
COLUMNS = (
    "account_id",
    "id",
    "run_id",
    "customer_id",
    "event_type",
    "meter",
    "quantity",
    "timestamp",
)
FULL = (*COLUMNS, "units")


def rows(count: int, start: int = 0) -> list[tuple[object, ...]]:
    return [(1, f"evt_{i:05d}", "run_1", "cus_1", "t", "m", 1.0, TS) for i in range(start, count)]


def test_rows_go_in_in_order_and_duplicates_are_skipped(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.create_tables()
    try:
        with db.write() as conn:
            assert insert_many(conn, events, COLUMNS, rows(300)) == 300
            assert max_seq(conn, events) == 300
            again = rows(310, start=290)  # 10 known, 10 new
            assert insert_many(conn, events, COLUMNS, again) == 10
            mixed = [(*row, None) for row in rows(320, 310)]
            mixed[3] = (*mixed[3][:8], "tokens")
            assert insert_many(conn, events, FULL, mixed) == 10
        with db.read() as conn:
            got = conn.execute(select(events.c.id, events.c.units).order_by(events.c.seq)).all()
        assert [r.id for r in got] == [f"evt_{i:05d}" for i in range(320)]
        assert [r.units for r in got if r.units] == ["tokens"]
    finally:
        db.dispose()


def test_no_adapter_is_registered_for_none() -> None:
    Database("sqlite://")
    assert not any(key[0] is type(None) for key in sqlite3.adapters)


def test_checkpoints_run_in_the_background_and_stop_with_the_database(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = Database(f"sqlite:///{path}")
    db.create_tables()
    with db.write() as conn:
        insert_many(conn, events, COLUMNS, rows(500))
    checkpointer = db._checkpointer
    assert checkpointer is not None
    deadline = time.monotonic() + 5
    while (thread := checkpointer._thread) is None:  # started by the write
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert thread.name == "drip-checkpoint" and thread.daemon
    started = time.monotonic()
    db.dispose()
    assert time.monotonic() - started < 2 and not thread.is_alive()
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT count(*) FROM events").fetchone() == (500,)


def test_repeated_values_statement_is_what_sqlalchemy_compiles() -> None:
    from sqlalchemy import bindparam, create_engine

    from drip.server.storage import bulk
    from drip.server.storage.ingest import COMMON_COLUMNS, EVENT_COLUMNS, USAGE_COLUMNS
    from drip.server.storage.schema import usage_records

    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        for table, columns in (
            (events, COMMON_COLUMNS),
            (events, EVENT_COLUMNS),
            (usage_records, USAGE_COLUMNS),
        ):
            for nrows in (2, 7):
                repeated = bulk._repeated(conn, table, columns, nrows)
                assert repeated is not None
                values = [
                    {c: bindparam(f"p{r}_{i}") for i, c in enumerate(columns)} for r in range(nrows)
                ]
                statement = bulk.insert_ignore("sqlite", table).values(values)
                assert repeated[0] == str(statement.compile(dialect=conn.dialect))
    engine.dispose()


def test_a_new_file_takes_the_larger_page_size_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    from drip.server.storage.sqlite import PAGE_SIZE

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:  # a file made with SQLite's default page size
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    for path, size in ((tmp_path / "new.db", PAGE_SIZE), (old, 4096)):
        db = Database(f"sqlite:///{path}")
        try:
            db.create_tables()
            with db.write() as c:
                assert insert_many(c, events, COLUMNS, rows(3)) == 3
            with db.read() as c:
                assert c.exec_driver_sql("PRAGMA page_size").scalar() == size
                assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            db.dispose()


@pytest.mark.skipif(
    not hasattr(sqlite3.Connection, "setlimit"), reason="Python 3.11+ can lower the limit"
)
def test_statements_stay_under_the_librarys_limit_of_parameters(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'l.db'}")
    db.create_tables()
    try:
        with db.write() as conn:
            # what a SQLite built with the old default allows (500 rows would bind 4,000)
            conn.connection.dbapi_connection.setlimit(  # type: ignore[union-attr]
                sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999
            )
            assert insert_many(conn, events, COLUMNS, rows(1_200)) == 1_200
    finally:
        db.dispose()


def test_large_batches_go_in_once_with_duplicates_in_and_across_them(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a batch this size goes by ``COPY``; one that hits a stored id, or repeats
    an id of its own, falls back to the insert that skips duplicates. Either way each id is
    stored once, in order, with its values (JSON, booleans, whole quantities) intact."""
    from drip.server.storage import postgres
    from drip.server.storage.bulk import insert_new
    from drip.server.storage.ingest import EVENT_COLUMNS

    size = 2 * postgres.COPY_MIN_ROWS
    copies: list[bool] = []  # what each COPY attempt gave (PostgreSQL)
    real_copy = postgres.insert_copy

    def spy(*args: Any) -> bool:
        copies.append(real_copy(*args))
        return copies[-1]

    monkeypatch.setattr(postgres, "insert_copy", spy)

    def full(i: int) -> tuple[object, ...]:
        meta = f'{{"i":{i}}}' if i % 2 else None
        return (
            1, f"evt_{i:05d}", "run_1", "cus_1", "t", "m", i, None, None, None, None, None,
            meta, TS, 0.5, "ok", None, True if i % 3 == 0 else None,
        )  # fmt: skip

    db = Database(database_url)
    db.create_tables()
    try:
        with db.write() as conn:
            assert (
                insert_new(conn, events, EVENT_COLUMNS, 1, [full(i) for i in range(size)]) is None
            )
            # half stored already, then one id twice within the batch
            again = [full(i) for i in range(size // 2, size + size // 2)] + [full(size + 1)]
            went_in = insert_new(conn, events, EVENT_COLUMNS, 1, again)
            assert went_in == {f"evt_{i:05d}" for i in range(size, size + size // 2)}
            assert insert_new(conn, events, EVENT_COLUMNS, 1, [full(0), full(1)]) == set()
        with db.read() as conn:
            got = conn.execute(
                select(events.c.id, events.c.quantity, events.c.meta, events.c.event_only).order_by(
                    events.c.seq
                )
            ).all()
        total = size + size // 2
        assert [r.id for r in got] == [f"evt_{i:05d}" for i in range(total)]
        assert [r.quantity for r in got] == [float(i) for i in range(total)]
        assert [r.meta for r in got] == [{"i": i} if i % 2 else None for i in range(total)]
        assert [bool(r.event_only) for r in got] == [i % 3 == 0 for i in range(total)]
        assert copies == ([True, False] if db.dialect == "postgresql" else [])
    finally:
        db.dispose()


def test_dict_rows_report_the_ids_this_transaction_stored(database_url: str) -> None:
    """``bulk_insert_new`` (the run-events batch's insert): only the ids that went in now, so a
    row another writer stored first is never rolled up twice."""
    from drip.server.storage.bulk import bulk_insert_new
    from drip.server.storage.runs import event_row

    def row(i: int) -> dict[str, Any]:
        return event_row(
            1, "cus_1", "run_1", "t", id=f"evt_{i:03d}", meter="m", quantity=1.0, timestamp=TS,
            meta={"i": i},
        )  # fmt: skip

    db = Database(database_url)
    db.create_tables()
    try:
        with db.write() as conn:
            assert bulk_insert_new(conn, events, 1, [row(i) for i in range(40)]) is None
        with db.write() as conn:
            got = bulk_insert_new(conn, events, 1, [row(i) for i in range(30, 50)])
        assert got == {f"evt_{i:03d}" for i in range(40, 50)}
        with db.read() as conn:
            stored = conn.execute(select(events.c.id, events.c.meta).order_by(events.c.seq)).all()
        assert [(r.id, r.meta) for r in stored] == [(f"evt_{i:03d}", {"i": i}) for i in range(50)]
    finally:
        db.dispose()
