"""The ``drip`` command: ``serve``, ``db``, ``keys create``, ``demo``, ``runs``, ``timeline``, ``usage``.

Imports are lazy so that ``drip --help`` stays fast: the server (FastAPI, SQLAlchemy, uvicorn)
is imported only by the commands that run it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import DripError

__all__ = ["main"]

DEFAULT_DB = os.path.join(".drip", "drip.db")
DEFAULT_PORT = 8787


def _database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    path = os.path.abspath(args.db or DEFAULT_DB)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f"sqlite:///{path}"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _add_db_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="PATH", help=f"SQLite file (default: {DEFAULT_DB})")
    where.add_argument(
        "--database-url",
        metavar="URL",
        help="database URL, e.g. postgresql://user:pass@host/drip (psycopg 3)",
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import Pricing
    from .server.keys import KeyStore
    from .server.settings import Settings
    from .server.storage.database import Database

    try:
        Pricing.build(args.price or [], args.default_price)
    except ValueError as exc:
        print(f"drip serve: {exc}", file=sys.stderr)
        return 2
    url = _database_url(args)
    settings = Settings(
        database_url=url,
        prices=tuple(args.price or ()),
        default_price=args.default_price,
        production=args.production,
    )
    # migrate and make the first keys once, here; the workers find the schema at head
    db = Database(url)
    try:
        db.upgrade()
        created = KeyStore(db).bootstrap()
    finally:
        db.dispose()
    base = f"http://{args.host}:{args.port}"
    print(f"Drip local server on {base} (API at {base}/v1, dashboard at {base}/)")
    print(f"database: {url}" + (f"; {args.workers} workers" if args.workers > 1 else ""))
    if created is not None:
        secret, public = created
        print("A new database: created the 'default' account with these keys (shown once):")
        print(f"  secret key: {secret}")
        print(f"  public key: {public}")
        print(f"  export DRIP_API_KEY={secret} DRIP_BASE_URL={base}")
        print(f"  dashboard: {base}/#key={secret}")
    else:
        print("Need a key? drip keys create --db ... (keys are stored hashed, never shown again)")
    sys.stdout.flush()
    # every worker process builds its app from these variables (create_app() reads them)
    os.environ.update(settings.to_env())
    uvicorn.run(
        "drip.server.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from .server.storage import migrations
    from .server.storage.database import Database

    db = Database(_database_url(args))
    try:
        if args.db_command == "upgrade":
            applied = db.upgrade()
            print(f"upgraded: {', '.join(applied)}" if applied else "already at head")
        print(f"current: {migrations.current(db) or 'none'} (head: {migrations.head()})")
    finally:
        db.dispose()
    return 0


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from .server.keys import KeyStore
    from .server.storage.database import Database

    db = Database(_database_url(args))
    try:
        db.upgrade()
        print(KeyStore(db).create_key(args.account, public=args.public))
    finally:
        db.dispose()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo

    return _demo.main(args)


def _client() -> Any:
    from .client import Drip

    return Drip()


def _cmd_runs(args: argparse.Namespace) -> int:
    with _client() as client:
        runs = client.list_runs(customer_id=args.customer, limit=args.limit)
    for run in runs.data:
        parent = f"  parent={run.parent_run_id}" if run.parent_run_id else ""
        print(f"{run.id}  {run.status.value:<9}  {run.workflow_name}  {run.customer_id}{parent}")
    return 0


def _cmd_timeline(args: argparse.Namespace) -> int:
    from ._render import timeline_tree

    with _client() as client:
        print(timeline_tree(client.get_run_timeline(args.run_id)))
    return 0


def _cmd_usage(args: argparse.Namespace) -> int:
    from ._render import usage_table

    with _client() as client:
        print(usage_table(client.get_usage_summary(customer_id=args.customer, meter=args.meter)))
    return 0


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="drip", description="Drip: usage attribution and execution traces."
    )
    parser.add_argument("--version", action="version", version=f"drip-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the local Drip server")
    _add_db_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: 8787)")
    serve.add_argument(
        "--price",
        action="append",
        metavar="METER=PRICE",
        help="flat price of a meter in USDC per unit, for charges (repeatable)",
    )
    serve.add_argument(
        "--default-price", default="0", metavar="PRICE", help="price of meters not listed"
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--workers", type=_positive, default=1, metavar="N", help="worker processes (default: 1)"
    )
    serve.add_argument("--production", action="store_true", help="no /docs and no /openapi.json")
    serve.set_defaults(handler=_cmd_serve)

    db = commands.add_parser("db", help="the database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, text in (
        ("upgrade", "apply the migrations that are missing (drip serve does this on start)"),
        ("current", "print the schema's revision"),
    ):
        action = db_commands.add_parser(name, help=text)
        _add_db_options(action)
        action.set_defaults(handler=_cmd_db)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", help="create a key and print it")
    _add_db_options(create)
    create.add_argument("--public", action="store_true", help="a public (pk_) key")
    create.add_argument("--account", default="default", help="account name (created if new)")
    create.set_defaults(handler=_cmd_keys_create)

    demo = commands.add_parser("demo", help="run an instrumented sample agent")
    demo.set_defaults(handler=_cmd_demo)
    # the read commands talk to the server of DRIP_BASE_URL with DRIP_API_KEY, like the SDK
    runs = commands.add_parser("runs", help="list recent runs (newest first)")
    runs.add_argument("--customer", help="only this customer's runs")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(handler=_cmd_runs)
    timeline = commands.add_parser("timeline", help="show a run's events as a tree")
    timeline.add_argument("run_id")
    timeline.set_defaults(handler=_cmd_timeline)
    usage = commands.add_parser("usage", help="show usage per meter")
    usage.add_argument("--customer", help="one customer's usage")
    usage.add_argument("--meter", help="one meter")
    usage.set_defaults(handler=_cmd_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``drip`` command."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except DripError as exc:
        print(f"drip {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
