"""``drip db upgrade|current``: the database schema (Alembic migrations)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_db_options, database_url, opened

__all__ = ["add"]


def _db(args: argparse.Namespace) -> int:
    from ..server.storage import migrations

    with opened(database_url(args)) as db:
        if args.db_command == "upgrade":
            applied = db.upgrade()
            print(f"upgraded: {', '.join(applied)}" if applied else "already at head")
        print(f"current: {migrations.current(db) or 'none'} (head: {migrations.head()})")
    return 0


def add(commands: Any) -> None:
    db = commands.add_parser("db", help="the database schema (Alembic migrations)")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, text in (
        ("upgrade", "apply the migrations that are missing (drip serve does this on start)"),
        ("current", "print the schema's revision"),
    ):
        action = actions.add_parser(name, help=text)
        add_db_options(action)
        action.set_defaults(handler=_db)
