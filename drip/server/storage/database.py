"""One database: the engine, the transaction rules and the schema kept at the migrations' head.

The dialect-only parts live behind one small seam, a module per dialect (``sqlite``,
``postgres``) with the same three names: ``create(url)`` for the engine, ``migration_lock``
for the lock held while migrating and whether writes are serialised in the process. SQLite has
one writer per file, so writes queue on a process-wide lock (cheaper than busy-waiting inside
SQLite) and checkpoint the WAL on a background thread; PostgreSQL takes writes side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from . import postgres, sqlite

__all__ = ["Database", "backend"]


def backend(url: str) -> str:
    """``sqlite`` or ``postgresql`` for a database URL; ValueError for anything else."""
    name = make_url(url.replace("postgres://", "postgresql://", 1)).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise ValueError(
            f"unsupported database {name!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    return name


class Database:
    """One database: an engine, read and write transactions, and its migrations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = backend(url)
        self._checkpointer: sqlite.Checkpointer | None = None
        self._write_lock: AbstractContextManager[Any]
        if self.dialect == "sqlite":
            self.engine = sqlite.create(url)
            self._write_lock = threading.Lock()
            if not sqlite.in_memory(url):
                self._checkpointer = sqlite.Checkpointer(self.engine)
        else:
            self.engine = postgres.create(url)
            self._write_lock = nullcontext()

    def migration_lock(self) -> AbstractContextManager[Connection]:
        """A connection holding the database-wide migration lock (see the dialect modules)."""
        if self.dialect == "sqlite":
            return sqlite.migration_lock(self.engine)
        return postgres.migration_lock(self.engine)

    def upgrade(self) -> list[str]:
        """Bring the schema to the newest migration, under the lock; the revisions applied."""
        from .migrations import upgrade

        return upgrade(self)

    def create_tables(self) -> None:
        """Create or upgrade the schema (an alias of :meth:`upgrade`, kept for callers)."""
        self.upgrade()

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
