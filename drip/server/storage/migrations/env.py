"""Alembic's entry point: runs the migrations on the connection ``upgrade`` hands over (or on
``sqlalchemy.url`` when Alembic's own command line is used)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from drip.server.storage.schema import metadata


def _run(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()
