"""``DRIP_BASE_URL=local[:PATH]``: the local Drip server inside this process.

The first client that asks starts the server (``drip.server``) on a free loopback port over a
SQLite file; later clients of the same file reuse it. Same wire, same code path as
``drip serve``: only the address is chosen for you.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any

from ._config import Settings
from .errors import DripConfigurationError, driver_words

__all__ = ["attach_local_server"]

_lock = threading.Lock()
_servers: dict[str, tuple[Any, str]] = {}
#: path -> (when, why) of a server that could not start: not tried again for ``_RETRY_AFTER``
#: seconds, so a metered loop does not pay for a failing start on every call
_failed: dict[str, tuple[float, str]] = {}
_RETRY_AFTER = 10.0


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
            failed = _failed.get(path)
            if failed is not None and time.monotonic() - failed[0] < _RETRY_AFTER:
                raise DripConfigurationError(failed[1])
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                server = start_server(f"sqlite:///{path}")
                entry = (server, server.create_key())
            except Exception as exc:  # a folder that cannot be made, a file that is no database
                why = _cannot_start(path, exc)
                _failed[path] = (time.monotonic(), why)
                raise DripConfigurationError(why) from exc
            _failed.pop(path, None)
            _servers[path] = entry
    server, key = entry
    return dataclasses.replace(
        settings,
        base_url=f"{server.url}/v1",
        api_key=settings.api_key or key,
        # a later process replays this one's spool into the same file (its port and key differ)
        spool_identity=(f"local:{path}", settings.api_key),
    )


def _cannot_start(path: str, exc: Exception) -> str:
    return (
        f"DRIP_BASE_URL=local could not start the local Drip server over {path}: "
        f"{driver_words(exc)}. "
        "Run from a folder you can write to, or name the file: "
        "DRIP_BASE_URL=local:/path/to/drip.db"
    )
