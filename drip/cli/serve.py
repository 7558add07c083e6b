"""``drip serve``: the local Drip server (API, health and dashboard) on one port."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from typing import Any

from ._common import CommandError, add_db_options, database_url, opened, shown

__all__ = ["add"]

DEFAULT_PORT = 8787


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 65535:  # the OS would take 99999 as 34463 without a word
        raise argparse.ArgumentTypeError("must be a TCP port, 1-65535")
    return value


def base_url(host: str, port: int) -> str:
    """The server's address as a URL (an IPv6 address in brackets: ``http://[::1]:8787``)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the server could not listen there (the port is taken, the address is not this
    machine's), found by binding once the way uvicorn will; None when it can."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        hint = " (another server is there: choose another --port)"
        return (exc.strerror or str(exc)) + (hint if exc.errno == errno.EADDRINUSE else "")
    return None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server import Pricing
    from ..server.keys import KeyStore
    from ..server.settings import Settings
    from ..server.storage.sqlite import in_memory

    try:
        Pricing.build(args.price or [], args.default_price)
    except ValueError as exc:
        print(f"drip serve: {exc}", file=sys.stderr)
        return 2
    url = database_url(args)
    settings = Settings(
        database_url=url,
        prices=tuple(args.price or ()),
        default_price=args.default_price,
        production=args.production,
        auto_create_customers=not args.no_auto_create_customers,
    )
    # migrate and make the first keys once, here; the workers find the schema at head
    with opened(url) as db:
        if db.dialect == "sqlite" and in_memory(url):
            raise CommandError(
                "an in-memory SQLite database lives in one process, and the server's are not "
                "this one (the keys printed here would be unknown to it): use a file, --db PATH"
            )
        db.upgrade()
        # before a new database's keys are made: they are shown once, when the server starts
        problem = _cannot_listen(args.host, args.port)
        created = None if problem is not None else KeyStore(db).bootstrap()
    if problem is not None:
        print(f"drip serve: cannot listen on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 2
    base = base_url(args.host, args.port)
    print(f"Drip local server on {base} (API at {base}/v1, dashboard at {base}/)")
    print(f"database: {shown(url)}" + (f"; {args.workers} workers" if args.workers > 1 else ""))
    if created is not None:
        secret, public = created
        print("A new database: created the 'default' account with these keys (shown once):")
        print(f"  secret key: {secret}")
        print(f"  public key: {public}")
        print(f"  export DRIP_API_KEY={secret} DRIP_BASE_URL={base}")
        print(f"  dashboard: {base}/#key={secret}")
    else:
        where = f" --db {args.db}" if args.db else ""
        print(f"Need a key? drip keys create{where} (keys are stored hashed, never shown again)")
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
        http=args.http,
        loop=args.loop,
    )
    return 0


def add(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the local Drip server")
    add_db_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (default: 8787)")
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
    # uvicorn's "auto" takes httptools and uvloop when installed (the server extra installs
    # them): they parse and move a 1 MB ingest batch for a fraction of h11's and asyncio's CPU
    serve.add_argument(
        "--http",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="HTTP parser (default: httptools when installed, else h11)",
    )
    serve.add_argument(
        "--loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="event loop (default: uvloop when installed, else asyncio)",
    )
    serve.add_argument("--production", action="store_true", help="no /docs and no /openapi.json")
    serve.add_argument(
        "--no-auto-create-customers",
        action="store_true",
        help="reject an unknown externalCustomerId instead of creating the customer",
    )
    serve.set_defaults(handler=_serve)
