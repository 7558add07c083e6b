"""``drip keys create | list | revoke``: API keys, in the server's database.

A revoked key is refused (401) by every worker of a running server within a second (how long a
worker trusts a key it verified: ``drip.server.keys.CACHE_SECONDS``). Keys are never shown again after ``create``: listings show a key's
first 12 characters, which ``revoke`` also takes.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from typing import Any

from ._common import CommandError, add_db_options, database_url, opened, shown

__all__ = ["add"]


def _create(args: argparse.Namespace) -> int:
    from ..server.keys import KeyStore, account_problem

    problem = account_problem(args.account)
    if problem is not None:  # before the database is opened (or made)
        raise CommandError(problem)
    url = database_url(args, must_exist=True)
    with opened(url) as db:
        db.upgrade()
        print(KeyStore(db).create_key(args.account, public=args.public))
    # stdout carries the key alone (for scripts); where it went is said on stderr
    print(f"drip keys create: stored in {shown(url)}", file=sys.stderr)
    return 0


def _existing(args: argparse.Namespace) -> str:
    """The database of ``list`` and ``revoke``: one that exists (they would make an empty one,
    and answer about it, from a mistyped ``--db``); and an ``--account`` that can be a name."""
    from ..server.keys import account_problem

    problem = None if args.account is None else account_problem(args.account)
    if problem is not None:
        raise CommandError(problem)
    if not args.database_url and args.db and not os.path.exists(args.db):
        raise CommandError(f"no database at {os.path.abspath(args.db)}")
    return database_url(args, must_exist=True)


def _list(args: argparse.Namespace) -> int:
    from ..server.keys import KeyStore

    url = _existing(args)
    with opened(url) as db:
        db.upgrade()
        found = KeyStore(db).list_keys(args.account)
    rows = [("ID", "ACCOUNT", "KIND", "KEY", "CREATED", "REVOKED")]
    for k in found:
        revoked = "-" if k.revoked_at is None else f"{k.revoked_at} by {k.revoked_by}"
        rows.append((str(k.id), k.account, k.kind, f"{k.hint}…", k.created_at, revoked))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1])
    if not found:
        print(f"drip keys list: no keys in {shown(url)}", file=sys.stderr)
    return 0


def _who() -> str:
    """Who revokes, when ``--by`` does not say: the user and host running the command (bytes
    that are not UTF-8 escaped, at most 256 characters: it is stored)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment nor in the password database
        user = "unknown"
    who = f"{user}@{socket.gethostname()}"
    who = who.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else "?" for c in who)[:256]


def _revoke(args: argparse.Namespace) -> int:
    from ..server.keys import CACHE_SECONDS, KeyRefused, KeyStore, account_problem

    problem = None if args.by is None else account_problem(args.by, "--by name")
    if problem is not None:
        raise CommandError(problem)
    ref = sys.stdin.readline().strip() if args.key == "-" else args.key.strip()
    if not ref:
        raise CommandError("no key given: name the key, or its first characters")
    url = _existing(args)
    with opened(url) as db:
        db.upgrade()
        try:
            info, done = KeyStore(db).revoke(
                ref, by=args.by or _who(), account=args.account, force=args.force
            )
        except KeyRefused as exc:
            raise CommandError(str(exc)) from None
    what = f"{info.kind} key {info.hint}… (id {info.id}, account {info.account!r})"
    if done:
        print(f"revoked {what} at {info.revoked_at} by {info.revoked_by}")
        print(
            f"drip keys revoke: stored in {shown(url)}; a running server refuses it (401) "
            f"within {CACHE_SECONDS:g} s",
            file=sys.stderr,
        )
    else:
        print(f"{what} was already revoked at {info.revoked_at} by {info.revoked_by}")
    return 0


def add(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key and print it")
    add_db_options(create)
    create.add_argument("--public", action="store_true", help="a public (pk_) key")
    create.add_argument("--account", default="default", help="account name (created if new)")
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="list the keys: first characters, kind, revoked")
    add_db_options(listing)
    listing.add_argument("--account", help="only this account's keys")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser(
        "revoke", help="revoke a key: refused (401) by every worker within a second"
    )
    add_db_options(revoke)
    revoke.add_argument(
        "key",
        metavar="KEY",
        help="the whole key, its ID or its first characters as `drip keys list` shows them "
        "(at most 12; several keys matching is refused); - reads it from stdin",
    )
    revoke.add_argument("--account", help="only a key of this account")
    revoke.add_argument(
        "--force", action="store_true", help="revoke an account's last secret key too"
    )
    revoke.add_argument("--by", help="who revokes it (stored; default: user@host)")
    revoke.set_defaults(handler=_revoke)
