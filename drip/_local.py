"""``DRIP_BASE_URL=local[:PATH]``: the local Drip server inside this process.

The first client that asks starts the server (``drip.server``) on a free loopback port over a
SQLite file; later clients of the same file reuse it. Same wire, same code path as
``drip serve``: only the address is chosen for you.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from ._config import Settings
from .errors import DripConfigurationError

__all__ = ["attach_local_server"]

_lock = threading.Lock()
_servers: dict[str, tuple[Any, str]] = {}


def attach_local_server(settings: Settings) -> Settings:
    """Start (or reuse) the embedded server for ``settings.local_db`` and point at it."""
    assert settings.local_db is not None
    try:
        from .server.embedded import start_server
    except ImportError as exc:
        raise DripConfigurationError(
            "DRIP_BASE_URL=local runs the local Drip server inside this process, which needs "
            f'the server extra: pip install "drip-sdk[server]" ({exc})'
        ) from exc
    path = os.path.abspath(settings.local_db)
    with _lock:
        entry = _servers.get(path)
        if entry is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            server = start_server(f"sqlite:///{path}")
            entry = (server, server.create_key())
            _servers[path] = entry
    server, key = entry
    return dataclasses.replace(
        settings, base_url=f"{server.url}/v1", api_key=settings.api_key or key
    )
