"""``drip serve``: the local Drip server (API, health and dashboard) on one port."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_db_options, database_url

__all__ = ["add"]

DEFAULT_PORT = 8787


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server import Pricing, create_app

    try:
        pricing = Pricing.build(args.price or [], args.default_price)
    except ValueError as exc:
        print(f"drip serve: {exc}", file=sys.stderr)
        return 2
    url = database_url(args)
    app = create_app(url, pricing=pricing)
    created = app.state.drip.keys.bootstrap()
    base = f"http://{args.host}:{args.port}"
    print(f"Drip local server on {base} (API at {base}/v1, dashboard at {base}/)")
    print(f"database: {url}")
    if created is not None:
        secret, public = created
        print("A new database: created the 'default' account with these keys (shown once):")
        print(f"  secret key: {secret}")
        print(f"  public key: {public}")
        print(f"  export DRIP_API_KEY={secret} DRIP_BASE_URL={base}")
        print(f"  dashboard: {base}/#key={secret}")
    else:
        where = f"--db {args.db}" if args.db else ""
        print(f"Need a key? drip keys create {where}".rstrip() + " (keys are stored hashed)")
    sys.stdout.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the local Drip server")
    add_db_options(serve)
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
    serve.set_defaults(handler=_serve)
