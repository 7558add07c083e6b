"""``drip keys create``: a new API key written into the server's database."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_db_options, database_url, opened, shown

__all__ = ["add"]


def _create(args: argparse.Namespace) -> int:
    from ..server.keys import KeyStore

    url = database_url(args, must_exist=True)
    with opened(url) as db:
        db.upgrade()
        print(KeyStore(db).create_key(args.account, public=args.public))
    # stdout carries the key alone (for scripts); where it went is said on stderr
    print(f"drip keys create: stored in {shown(url)}", file=sys.stderr)
    return 0


def add(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key and print it")
    add_db_options(create)
    create.add_argument("--public", action="store_true", help="a public (pk_) key")
    create.add_argument("--account", default="default", help="account name (created if new)")
    create.set_defaults(handler=_create)
