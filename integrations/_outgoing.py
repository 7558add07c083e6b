"""What the HTTP client integrations (``httpx``, ``requests``) share: drip's baggage put on an
outgoing request's headers, never at the cost of the application's call."""

from __future__ import annotations

import logging
from typing import Any

from drip import context

__all__ = ["inject_quietly"]

logger = logging.getLogger("drip")


def inject_quietly(headers: Any) -> None:
    """``drip.context.inject(headers)``; a failure is logged, and the request goes out."""
    try:
        context.inject(headers)
    except Exception:
        logger.exception("drip: this request goes out without drip's baggage")
