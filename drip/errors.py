"""Every exception the SDK raises.

::

    DripError                          anything from this SDK
    ├── DripConfigurationError         bad or missing settings, found at construction
    ├── DripValidationError            bad input, found before anything is sent (``field``)
    ├── DripNetworkError               connect / read / write failure or timeout
    │   └── DripTimeoutError
    ├── DripDeliveryError              instrumentation records that will not be delivered
    │                                  (passed to ``on_error``; ``code``, ``count``, ``item_id``)
    └── DripAPIError                   the server answered with an error status
        ├── DripBadRequestError        400, 413, 422
        ├── DripAuthenticationError    401
        ├── DripPermissionError        403
        ├── DripNotFoundError          404
        ├── DripConflictError          409 (``existing_customer_id`` when it names one)
        ├── DripRateLimitError         429 (``retry_after`` in seconds)
        └── DripServerError            5xx

``DripAPIError`` carries ``status_code``, ``message``, ``code``, ``request_id`` and the parsed
``body``. httpx exceptions never reach callers: the transport translates them here.
"""

from __future__ import annotations

from typing import Any


class DripError(Exception):
    """Base class of every error raised by drip."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DripConfigurationError(DripError):
    """Settings are missing or malformed (API key, base URL, timeouts, ...)."""


class DripValidationError(DripError, ValueError):
    """An argument was rejected before anything was sent. ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DripNetworkError(DripError):
    """The request did not get an HTTP answer (connection refused or reset, timeout, ...)."""


class DripTimeoutError(DripNetworkError):
    """The request timed out."""


class DripDeliveryError(DripError):
    """Records of the instrumentation that will not be delivered; ``code`` says why.

    Never raised into your code by delivery: it is logged and passed to ``on_error``. ``code``
    is ``BUFFER_FULL`` or ``CLOSED`` (dropped on the caller's side), the server's reason for a
    rejected item (e.g. ``RUN_NOT_FOUND``; ``item_id`` names the item), ``REFUSED`` (the
    server refused a whole batch, e.g. 404), ``UNAUTHORIZED`` (the server refused the API key,
    401 or 403: the records are retried, and kept in the spool when there is one),
    ``RETRYING`` (an outage), ``UNDELIVERED`` (the retry budget or a shutdown timeout ran out
    without a spool to hold them), ``SPOOL``, ``SPOOL_CORRUPT``, ``ENCODE`` or ``WORKER``.
    """

    def __init__(
        self, message: str, *, code: str, count: int = 1, item_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.count = count
        self.item_id = item_id


class DripAPIError(DripError):
    """The server answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        text = f"{self.message} (status: {self.status_code})"
        if self.code:
            text += f" [{self.code}]"
        return text


class DripBadRequestError(DripAPIError):
    """400, 413 or 422: the server refused the request's content."""


class DripAuthenticationError(DripAPIError):
    """401: the API key is missing, unknown or revoked."""


class DripPermissionError(DripAPIError):
    """403: the key may not do this (e.g. a public key on a secret-only endpoint)."""


class DripNotFoundError(DripAPIError):
    """404: no such resource in this account."""


class DripConflictError(DripAPIError):
    """409: the resource exists already; ``existing_customer_id`` names it for customers."""

    @property
    def existing_customer_id(self) -> str | None:
        value = self.body.get("existingCustomerId") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


class DripRateLimitError(DripAPIError):
    """429: slow down; ``retry_after`` is the server's hint in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class DripServerError(DripAPIError):
    """5xx: the server failed."""


_BY_STATUS: dict[int, type[DripAPIError]] = {
    400: DripBadRequestError,
    401: DripAuthenticationError,
    403: DripPermissionError,
    404: DripNotFoundError,
    409: DripConflictError,
    413: DripBadRequestError,
    422: DripBadRequestError,
}


def driver_words(exc: BaseException) -> str:
    """The first line of what a database driver said (under SQLAlchemy's wrapper, ``orig``)."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def api_error_class(status_code: int) -> type[DripAPIError]:
    """The exception class for an HTTP error status."""
    if status_code == 429:
        return DripRateLimitError
    if status_code >= 500:
        return DripServerError
    return _BY_STATUS.get(status_code, DripAPIError)


__all__ = [
    "DripAPIError",
    "DripAuthenticationError",
    "DripBadRequestError",
    "DripConfigurationError",
    "DripConflictError",
    "DripDeliveryError",
    "DripError",
    "DripNetworkError",
    "DripNotFoundError",
    "DripPermissionError",
    "DripRateLimitError",
    "DripServerError",
    "DripTimeoutError",
    "DripValidationError",
    "api_error_class",
]
