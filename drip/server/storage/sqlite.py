"""SQLite-only parts: the engine's connection settings, the WAL checkpoint thread and the
migration lock.

The driver's own transaction handling is switched off so that SQLAlchemy's ``BEGIN`` is real:
write transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken up front, never
upgraded half-way). WAL checkpoints happen on a background thread (``Checkpointer``), not inside
a commit. Nothing here changes the ``sqlite3`` module for the rest of the process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from . import decimals

__all__ = ["Checkpointer", "create", "in_memory", "migration_lock"]

#: WAL size (pages) at which a commit checkpoints by itself, should the Checkpointer lag
BACKSTOP_PAGES = 20_000
#: page size of a new database file (an existing file keeps its own): inserting the SDK's
#: events with their five indexes cost ~15% less CPU per row than with SQLite's 4,096
PAGE_SIZE = 8192


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


def in_memory(url: str) -> bool:
    """The URL names an in-memory database (one connection, shared by every thread)."""
    return make_url(url).database in (None, "", ":memory:")


def create(url: str) -> Engine:
    """An engine whose write transactions begin with ``BEGIN IMMEDIATE``."""
    memory = in_memory(url)
    if not memory:
        folder = os.path.dirname(os.path.abspath(str(make_url(url).database)))
        os.makedirs(folder, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        decimals.register_sqlite(dbapi_conn)  # exact sums in the rollups
        cursor = dbapi_conn.cursor()
        # first: N processes opening a fresh file at once wait for each other below
        cursor.execute("PRAGMA busy_timeout=30000")
        if not memory:
            # before WAL mode is set: only a database still empty takes it
            cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
            cursor.execute("PRAGMA journal_mode=WAL")
            # commits leave checkpoints to the Checkpointer thread; this is only a backstop
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("drip_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection inside a ``BEGIN IMMEDIATE`` transaction: the database's one write lock,
    held while migrations run, so processes starting together migrate one after another (the
    later ones find the schema at head). Works on every platform, needs no lock file."""
    with engine.connect() as conn:
        conn.execution_options(drip_write=True)
        with conn.begin():
            yield conn
