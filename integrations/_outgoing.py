"""What the HTTP client integrations (``httpx``, ``requests``) share: drip's baggage put on an
outgoing request's headers, never at the cost of the application's call, and only to the hosts
the application names when it names some (``instrument(hosts=[...])``): baggage names the
customer, an application's own id for it too, which a third-party API has no need to see."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from typing import Any

from drip import context

__all__ = ["host_patterns", "inject_quietly"]

logger = logging.getLogger("drip")


def host_patterns(hosts: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """``hosts`` as ``instrument`` takes it, checked (a mistake raises when instrumenting)."""
    if hosts is None:
        return None
    if isinstance(hosts, str):
        hosts = (hosts,)
    patterns = tuple(hosts)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise TypeError(
                f"hosts takes host names or patterns (non-empty strings), got {pattern!r}"
            )
    return tuple(p.strip().lower() for p in patterns)


def inject_quietly(
    headers: Any, host: str | None = None, hosts: tuple[str, ...] | None = None
) -> None:
    """``drip.context.inject(headers)`` for a request to ``host``, when ``hosts`` (None: any)
    lets it go there; a failure is logged, and the request goes out."""
    try:
        if hosts is not None:
            name = (host or "").lower()
            if not any(fnmatch.fnmatchcase(name, p) for p in hosts):
                return
        context.inject(headers)
    except Exception:
        logger.exception("drip: this request goes out without drip's baggage")
