"""HTTP errors of the local server: always one JSON object, never a stack trace.

Body: ``{"error": <short string>, "message": <human string>, "code": <UPPER_SNAKE>}`` plus
``existingCustomerId`` on a customer conflict and ``retryAfter`` on 429 (contract §3.1).
Rules: an unknown id in the *path* is 404; an unknown id inside a request *body* is 422 with a
``…_NOT_FOUND`` code (the published client reads any 404 from ``/runs/record`` as "endpoint
missing", contract §2.1.8).
"""

from __future__ import annotations

import errno
from typing import Any

from pydantic import ValidationError

__all__ = [
    "ApiError",
    "database_read_only",
    "database_unavailable",
    "describe_validation_error",
    "error_body",
    "missing_text",
    "storage_full",
]

_SHORT = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
    507: "insufficient_storage",
}


def storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database's disk is full: SQLite's
    ``SQLITE_FULL``, PostgreSQL's ``disk_full`` (53100), or ``ENOSPC`` from the OS."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if getattr(current, "sqlstate", None) == "53100":  # psycopg
            return True
        if current.__class__.__name__ == "OperationalError" and "database or disk is full" in str(
            current
        ):  # sqlite3, and SQLAlchemy's wrapper of it
            return True
        orig = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    return False


#: SQLite's words for a file it cannot open, or a write lock it waited for in vain
_SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked")


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be used right now, which a
    retry may fix: PostgreSQL unreachable, restarting or refusing connections (psycopg's
    ``OperationalError``: connection failures, admin shutdown, too many connections), a
    connection lost mid-request, no connection free in the pool, SQLite's file that cannot be
    opened or stays locked."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = current.__class__
        if kind.__module__.startswith("psycopg") and kind.__name__ == "OperationalError":
            return True
        if getattr(current, "connection_invalidated", False):  # SQLAlchemy: connection lost
            return True
        if kind.__module__.startswith("sqlalchemy") and kind.__name__ == "TimeoutError":
            return True  # the pool had no connection to give within its timeout
        if kind.__name__ == "OperationalError" and any(
            words in str(current) for words in _SQLITE_UNAVAILABLE
        ):
            return True
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    return False


def database_read_only(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database takes no writes: SQLite's
    ``SQLITE_READONLY`` (a file or mount made read-only), PostgreSQL's read-only transaction
    (a hot standby, ``default_transaction_read_only``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) == "25006":  # psycopg: read_only_sql_transaction
            return True
        if "attempt to write a readonly database" in str(current):  # sqlite3
            return True
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    return False


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON error object for a status."""
    short = _SHORT.get(status, "internal_error" if status >= 500 else "error")
    return {"error": short, "message": message, "code": code, **extra}


class ApiError(Exception):
    """Raised anywhere in a request; the app turns it into the JSON error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.code, self.message, **self.extra)

    @classmethod
    def not_found(cls, kind: str, ident: str) -> ApiError:
        """404 for a resource named in the path."""
        return cls(404, f"{kind.upper()}_NOT_FOUND", f"No {kind} with id {ident!r}")

    @classmethod
    def missing_reference(cls, kind: str, ident: str, field: str) -> ApiError:
        """422 for an id in the request body that names nothing in this account."""
        return cls(422, f"{kind.upper()}_NOT_FOUND", f"{field}: {missing_text(kind, ident)}")


def missing_text(kind: str, ident: str) -> str:
    """Why a reference names nothing; for a customer id that is no ``cus_`` id, where your own
    id goes (``customer_id="user_123"`` is the mistake every new user makes once)."""
    text = f"no {kind} with id {ident!r} in this account"
    if kind == "customer" and not ident.startswith("cus_"):
        text += (
            " (customerId is Drip's cus_… id; to name a customer by your own id, send it as "
            "externalCustomerId: external_customer_id= in the SDK)"
        )
    return text


def _where(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def describe_validation_error(exc: ValidationError, *, prefix: str = "", limit: int = 3) -> str:
    """``customerId: Field required; quantity: …`` — names the field of each problem."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        where = _where(tuple(err.get("loc", ())))
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        parts.append(f"{where}: {msg}" if where else msg)
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
