"""What the ``drip`` commands share: where the database is, the client, rich output.

Server commands (``serve``, ``keys``) open the database directly; read commands (``runs``,
``usage``, ``timeline``, ``import``) talk to the server of ``DRIP_BASE_URL`` with
``DRIP_API_KEY``, like the SDK.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from ..client import Drip

__all__ = [
    "DEFAULT_DB",
    "CommandError",
    "add_db_options",
    "client",
    "console",
    "database_url",
]

#: the SQLite file of ``drip serve`` and ``drip keys create`` when neither names one
DEFAULT_DB = os.path.join(".drip", "drip.db")


class CommandError(Exception):
    """A refusal the command prints as ``drip <command>: <message>`` (exit status 2)."""


def add_db_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="PATH", help=f"SQLite file (default: {DEFAULT_DB})")
    where.add_argument(
        "--database-url",
        metavar="URL",
        help="database URL, e.g. postgresql://user:pass@host/drip (psycopg 3)",
    )


def database_url(args: argparse.Namespace, *, must_exist: bool = False) -> str:
    """The database of ``--database-url`` / ``--db`` / the default file.

    ``must_exist`` refuses a default file that is not there (``keys create``): a key written
    into a new, empty database would be unknown to the server the user is running.
    """
    if args.database_url:
        return str(args.database_url)
    path = os.path.abspath(args.db or DEFAULT_DB)
    if must_exist and not args.db and not os.path.exists(path):
        raise CommandError(
            f"no database at {path} (the default of `drip serve` started in this directory). "
            "Start `drip serve` here first, or name the server's database with --db PATH or "
            "--database-url URL."
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f"sqlite:///{path}"


def client() -> Drip:
    from ..client import Drip

    return Drip()


def console(stderr: bool = False) -> Console:
    """A rich console (tables, progress bars); rich comes with the ``cli`` and ``server`` extras."""
    try:
        from rich.console import Console
    except ImportError:  # pragma: no cover - depends on the install
        raise CommandError(
            "this command draws tables with rich: pip install 'drip-sdk[cli]'"
        ) from None
    stream = sys.stderr if stderr else sys.stdout
    # piped output is read by scripts and tests: wide enough that ids are never cut
    width = None if stream.isatty() else 200
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)
