"""The module-level default client behind ``from drip import drip`` and ``drip.metered``.

It is created on first use, from the environment, so ``@drip.metered`` applied at import time
works before ``DRIP_API_KEY`` is set. ``configure()`` replaces it; ``reset_default_client()`` is
for tests. ``default_recorder`` is what ``drip.instrument`` hands down to runs and metered calls
as their fallback: the layers below never look the default client up themselves.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from ._delivery import lifecycle
from ._recorder import Recorder, log_limited
from .client import Drip
from .errors import DripConfigurationError

__all__ = ["configure", "default_client", "default_recorder", "reset_default_client"]

logger = logging.getLogger("drip")
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


def _close_at_exit() -> None:
    """The process is ending: deliver what is buffered (every client's, as the delivery's own
    ``atexit`` hook would: it runs after this one), then close the default client's
    connections, which nobody else will (``-X dev`` warned of an unclosed socket)."""
    client = _client
    if client is None:
        return
    try:
        lifecycle.shutdown_all()
        client._transport.close()
    except Exception:  # never stand between the process and its end
        logger.exception("drip: closing the default client at exit failed")


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


_unconfigured_log: dict[str, float] = {}
#: unexpected errors from making the default client whose traceback was logged (once each)
_bugs_logged: set[str] = set()


def default_recorder() -> Recorder | None:
    """The default client's recorder; None when it cannot be configured (no API key).

    A call that is then not recorded is logged (and raised under ``DRIP_STRICT=1``).
    """
    try:
        return default_client()._recorder
    except Exception as exc:  # never the host's problem at call time: said, and not recorded
        bug = not isinstance(exc, DripConfigurationError)
        if bug and len(_bugs_logged) < 64 and repr(exc) not in _bugs_logged:
            _bugs_logged.add(repr(exc))  # a bug of ours: its traceback, once
            logger.exception("drip: the default client could not be made")
        problem = DripConfigurationError(f"drip is not configured, nothing is recorded: {exc}")
        log_limited(_unconfigured_log, problem)
        if os.environ.get("DRIP_STRICT", "").strip().lower() in ("1", "true", "yes", "on"):
            raise problem from exc
        return None


# registered after the delivery's own hook (imported above), so it runs before it
atexit.register(_close_at_exit)
