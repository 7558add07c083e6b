"""The ``drip`` command: ``serve``, ``db``, ``keys create``, ``demo``, ``runs``, ``timeline``,
``usage`` and ``import``, one module each.

Imports are lazy so that ``drip --help`` stays fast: the server (FastAPI, SQLAlchemy, uvicorn)
and rich are imported only by the commands that use them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import DripError
from . import backfill, db, demo, keys, runs, serve, usage
from ._common import CommandError, missing_extra

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="drip", description="Drip: usage attribution and execution traces."
    )
    parser.add_argument("--version", action="version", version=f"drip-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (serve, db, keys, demo, runs, usage, backfill):
        module.add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``drip`` command."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
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
