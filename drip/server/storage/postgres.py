"""PostgreSQL-only parts: the psycopg 3 engine and the migration lock.

PostgreSQL needs no process-wide write lock: row locks and unique indexes keep concurrent
writers correct, so writes from several threads and worker processes run side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

__all__ = ["MIGRATION_LOCK_KEY", "create", "driver_url", "migration_lock"]

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
