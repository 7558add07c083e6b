"""What the ``drip`` commands share: where the database is, the client, rich output.

Server commands (``serve``, ``keys``) open the database directly; read commands (``runs``,
``usage``, ``timeline``, ``import``) talk to the server of ``DRIP_BASE_URL`` with
``DRIP_API_KEY``, like the SDK.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import driver_words

if TYPE_CHECKING:
    from rich.console import Console

    from ..client import Drip
    from ..server.storage.database import Database

__all__ = [
    "DEFAULT_DB",
    "EXTRAS",
    "CommandError",
    "add_db_options",
    "client",
    "console",
    "database_url",
    "missing_extra",
    "opened",
    "shown",
]

#: the SQLite file of ``drip serve`` and ``drip keys create`` when neither names one
DEFAULT_DB = os.path.join(".drip", "drip.db")


class CommandError(Exception):
    """A refusal the command prints as ``drip <command>: <message>`` (exit status 2)."""


#: the extra that installs each optional module a command imports (``pip install drip-sdk``
#: alone gives the SDK and the read commands' plain output, nothing of the server)
EXTRAS = {
    "alembic": "server",
    "fastapi": "server",
    "sqlalchemy": "server",
    "starlette": "server",
    "uvicorn": "server",
    "psycopg": "postgres",
    "rich": "cli",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """What to install for a module a command could not import, or None if it is not ours."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return (
        f"this command needs {module}, which comes with the {extra} extra: "
        f'pip install "drip-sdk[{extra}]"'
    )


def add_db_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--db",
        metavar="PATH",
        help=f"SQLite file (default: $DRIP_DATABASE_URL when set, else {DEFAULT_DB})",
    )
    where.add_argument(
        "--database-url",
        metavar="URL",
        help="database URL, e.g. postgresql://user:pass@host/drip (psycopg 3)",
    )


def database_url(args: argparse.Namespace, *, must_exist: bool = False) -> str:
    """The database of ``--database-url`` / ``--db`` / ``DRIP_DATABASE_URL`` (what the server's
    workers and ``uvicorn --factory`` read) / the default file.

    ``must_exist`` refuses a default file that is not there (``keys create``): a key written
    into a new, empty database would be unknown to the server the user is running.
    """
    if args.database_url:
        return str(args.database_url)
    if not args.db and os.environ.get("DRIP_DATABASE_URL"):
        return os.environ["DRIP_DATABASE_URL"]
    path = os.path.abspath(args.db or DEFAULT_DB)
    if must_exist and not args.db and not os.path.exists(path):
        raise CommandError(
            f"no database at {path} (the default of `drip serve` started in this directory). "
            "Start `drip serve` here first, or name the server's database with --db PATH or "
            "--database-url URL."
        )
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise CommandError(
            f"cannot make the database's folder {folder}: {exc.strerror or exc}"
        ) from None
    return f"sqlite:///{path}"


def shown(url: str) -> str:
    """A database URL fit to print or log: its password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # a file name that is not UTF-8 (its bytes as surrogates) is shown escaped: never an error
    printable = url.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        parsed = make_url(printable)
    except ArgumentError:
        return "<a database URL that cannot be read>"
    return printable if parsed.password is None else parsed.render_as_string(hide_password=True)


@contextmanager
def opened(url: str) -> Iterator[Database]:
    """The database of a command, closed after; what makes it unusable is a ``CommandError``
    naming the database (password masked) and the driver's own words, not a traceback: an
    unsupported URL, a server that cannot be reached, a file that is not a database.
    """
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from ..server.storage.database import Database
    from ..server.storage.migrations import SchemaTooNew

    try:
        db = Database(url)
    except ArgumentError:  # not printed: it may hold a password sqlalchemy could not find
        raise CommandError(
            "the database URL cannot be read: use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except DBAPIError as exc:
        raise _unusable(url, exc) from exc
    try:
        yield db
    except DBAPIError as exc:
        raise _unusable(url, exc) from exc
    except SchemaTooNew as exc:
        raise CommandError(f"cannot use the database {shown(url)}: {exc}") from None
    finally:
        db.dispose()


def _unusable(url: str, exc: Exception) -> CommandError:
    return CommandError(f"cannot use the database {shown(url)}: {driver_words(exc)}")


def client() -> Drip:
    from ..client import Drip

    return Drip()


def console(stderr: bool = False) -> Console:
    """A rich console (tables, progress bars); rich comes with the ``cli`` and ``server`` extras
    (without them the command says which to install: ``missing_extra``)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # `drip runs | head`: rich's own answer is SystemExit(1), an error status; main()
            # ends it as it ends `--json | head`, quietly with 141 (128 + SIGPIPE)
            self.quiet = True
            raise BrokenPipeError

    stream = sys.stderr if stderr else sys.stdout
    # piped output is read by scripts and tests: as wide as the rows, so nothing is ever cut
    # (a table is as wide as its content, not as the console)
    width = None if stream.isatty() else 1_000_000
    return _Console(file=stream, highlight=False, soft_wrap=False, width=width)
