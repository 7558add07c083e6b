"""The ``drip`` command: ``serve``, ``db``, ``keys create``, ``demo``, ``runs``, ``timeline``,
``usage``, ``import`` and ``spool``, one module each.

Imports are lazy so that ``drip --help`` stays fast: the server (FastAPI, SQLAlchemy, uvicorn)
and rich are imported only by the commands that use them.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence

from ..errors import DripError
from . import backfill, db, demo, keys, runs, serve, spool, usage
from ._common import CommandError, missing_extra

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="drip", description="Drip: usage attribution and execution traces."
    )
    parser.add_argument("--version", action="version", version=f"drip-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (serve, db, keys, demo, runs, usage, backfill, spool):
        module.add(commands)
    return parser


def _printable_anywhere() -> None:
    """On a terminal or pipe that is not UTF-8 (``PYTHONIOENCODING=ascii``, a latin-1 locale,
    a Windows console), what it cannot show (``→``, ``µs``, your customers' names) is
    replaced, not a UnicodeEncodeError after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if isinstance(stream, io.TextIOWrapper) and encoding != "utf8":
            stream.reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``drip`` command."""
    _printable_anywhere()
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `drip usage --json | head`: the reader left; no traceback, and none at exit either
        # when Python flushes stdout (it goes to /dev/null); 128 + SIGPIPE, as a shell tool
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except CommandError as exc:
        print(f"drip {args.command}: {exc}", file=sys.stderr)
        return 2
    except DripError as exc:
        print(f"drip {args.command}: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # a command of an extra that is not installed
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(f"drip {args.command}: {extra}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
