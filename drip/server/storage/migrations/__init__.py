"""Alembic migrations of the server's schema, shipped inside the package.

``upgrade(db)`` is what ``drip serve`` runs on start and ``drip db upgrade`` runs by hand: under
the database's migration lock (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite)
it stamps a database created by drip-sdk 0.2 (tables present, no ``alembic_version``) at the
first revision, then applies what is missing. Processes starting together take turns; all but
the first find nothing to do. A new revision goes in ``versions/`` (``NNNN_name.py``, its
``down_revision`` the previous head).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

if TYPE_CHECKING:
    from ..database import Database

__all__ = ["FIRST", "SchemaTooNew", "config", "current", "head", "upgrade"]

#: the revision a 0.2 database (tables made by ``create_all``) is stamped at
FIRST = "0001"


class SchemaTooNew(Exception):
    """The database is at a revision these migrations do not know: a newer drip-sdk made or
    upgraded it. Nothing is changed; serving it would write rows its schema may not take."""

    def __init__(self, revision: str) -> None:
        from drip._version import __version__

        super().__init__(
            f"its schema is at revision {revision!r}, which drip-sdk {__version__} does not "
            f"know (its newest is {head()!r}): a newer drip-sdk made or upgraded it. "
            "Serve it with the drip-sdk that did; nothing was changed"
        )
        self.revision = revision


def config(conn: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for these migrations, on ``conn`` (or ``url``)."""
    cfg = Config()
    cfg.set_main_option("script_location", "drip.server.storage:migrations")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    """The newest revision."""
    found = ScriptDirectory.from_config(config()).get_current_head()
    assert found is not None
    return found


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current(db: Database) -> str | None:
    """The revision the database is at (None: no schema yet)."""
    with db.engine.connect() as conn:
        return _revision(conn)


def upgrade(db: Database) -> list[str]:
    """Bring the schema to head under the migration lock; the revisions applied (in order)."""
    with db.migration_lock() as conn:
        before = _revision(conn)
        if before is None and inspect(conn).has_table("accounts"):
            # made by drip-sdk 0.2's create_all: the first revision is already in place
            command.stamp(config(conn), FIRST)
            before = FIRST
        if before == head():
            return []
        script = ScriptDirectory.from_config(config())
        if before is not None and before not in {rev.revision for rev in script.walk_revisions()}:
            raise SchemaTooNew(before)
        command.upgrade(config(conn), "head")
        after = _revision(conn)
    return [
        rev.revision for rev in reversed(list(script.iterate_revisions(after, before or "base")))
    ]
