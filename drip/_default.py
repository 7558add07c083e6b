"""The module-level default client behind ``from drip import drip`` and ``drip.metered``.

It is created on first use, from the environment, so ``@drip.metered`` applied at import time
works before ``DRIP_API_KEY`` is set. ``configure()`` replaces it; ``reset_default_client()`` is
for tests.
"""

from __future__ import annotations

import threading
from typing import Any

from .client import Drip

__all__ = ["configure", "default_client", "reset_default_client"]

_lock = threading.Lock()
_client: Drip | None = None


def default_client() -> Drip:
    """The default client, created from the environment on first call (thread-safe)."""
    client = _client
    if client is not None:
        return client
    with _lock:
        if _client is None:
            _set(Drip())
        assert _client is not None
        return _client


def _set(client: Drip | None) -> None:
    global _client
    _client = client


def configure(api_key: str | None = None, base_url: str | None = None, **options: Any) -> Drip:
    """Replace the default client with one built from these settings; returns it.

    The previous default client is shut down first (its buffered records are flushed).
    """
    new = Drip(api_key, base_url, **options)
    with _lock:
        old = _client
        _set(new)
    if old is not None:
        old.close()
    return new


def reset_default_client() -> None:
    """Forget the default client (shutting it down); the next use builds a new one."""
    with _lock:
        old = _client
        _set(None)
    if old is not None:
        old.close()


_LAZY_ENTRY_POINTS = frozenset(
    {"metered", "run", "customer", "flush", "shutdown", "stats", "current_event"}
)


class LazyClient:
    """The ``drip`` object: every attribute is the default client's, resolved on use.

    The instrumentation entry points (``metered``, ``run``, ...) do not build the client:
    they resolve it when a decorated function runs, so they work at import time.
    """

    def __getattr__(self, name: str) -> Any:
        if name in _LAZY_ENTRY_POINTS:
            from . import instrument

            return getattr(instrument, name)
        return getattr(default_client(), name)

    def __repr__(self) -> str:
        return "<drip default client (lazy)>"
