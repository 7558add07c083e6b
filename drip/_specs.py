"""What the client sends and reads: ``RequestSpec`` (one request, and how to read its answer)
and ``RawResponse`` (the status and undecoded body the transport hands back).

The endpoints (``drip._endpoints``) build specs; the transport (``drip._transport``) sends them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["RawResponse", "RequestSpec"]

T = TypeVar("T")


class RawResponse:
    """What the transport hands to a spec's parser: the status and the undecoded body."""

    __slots__ = ("_body", "content", "elapsed_ms", "status_code")

    def __init__(self, status_code: int, content: bytes, elapsed_ms: int) -> None:
        self.status_code = status_code
        self.content = content
        self.elapsed_ms = elapsed_ms
        self._body: Any = _UNSET

    @property
    def body(self) -> Any:
        """The body as JSON (None when empty or not JSON)."""
        if self._body is _UNSET:
            try:
                self._body = json.loads(self.content) if self.content else None
            except ValueError:
                self._body = None
        return self._body


_UNSET: Any = object()


@dataclass(frozen=True)
class RequestSpec(Generic[T]):
    """One request to make, and how to read its answer."""

    method: str
    path: str
    parse: Callable[[RawResponse], T]
    body: dict[str, Any] | None = None
    #: an already encoded JSON body (the delivery worker encodes its batch once)
    content: bytes | None = None
    params: dict[str, Any] | None = field(default=None)
    #: safe to send again after an ambiguous failure (GET, or a write carrying a key or id)
    retry_safe: bool = False
    #: the path is relative to the server root, not to ``/v1`` (health)
    outside_v1: bool = False
    #: error statuses are answers, not exceptions (ping)
    raise_for_status: bool = True
    #: stop after this many attempts whatever the settings say (ping: 1)
    max_attempts: int | None = None
