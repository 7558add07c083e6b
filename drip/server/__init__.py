"""The local Drip server: the Drip API over SQLite (or PostgreSQL), with a dashboard.

Needs the ``server`` extra (``pip install "drip-sdk[server]"``). ``import drip`` never imports
this package.

- :func:`create_app` — the FastAPI app, for any ASGI server.
- :func:`start_server` — serve it on a background thread (``DRIP_BASE_URL=local``, tests).
- ``drip serve`` — the command line.
"""

from __future__ import annotations

from .app import create_app
from .embedded import RunningServer, start_server
from .pricing import Pricing

__all__ = ["Pricing", "RunningServer", "create_app", "start_server"]
