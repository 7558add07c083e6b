"""What every request needs: the server state, and the caller checked against the scope table.

Routes declare ``who: Caller``; the dependency authenticates the ``Authorization: Bearer`` key
and enforces ``scopes.required`` for the route that matched, so no route can forget a check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from . import scopes
from .errors import ApiError
from .keys import KeyStore, Principal
from .pricing import Pricing
from .settings import Settings
from .storage.database import Database

__all__ = ["Caller", "ServerState", "authenticate", "state"]


@dataclass
class ServerState:
    """What every request needs: the database, the keys, the prices and the settings."""

    db: Database
    keys: KeyStore
    pricing: Pricing
    settings: Settings


def state(request: Request) -> ServerState:
    """The server state of the app handling ``request``."""
    found: ServerState = request.app.state.drip
    return found


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


def _check_nul(request: Request) -> None:
    """422 for a NUL in the path or a query parameter: nothing stored holds one (writes refuse
    it), and PostgreSQL would fail the query on it (a 500)."""
    if "\x00" in request.scope["path"]:
        raise ApiError(422, "VALIDATION_ERROR", "the request's path holds a NUL character")
    if b"%00" in request.scope["query_string"] or b"\x00" in request.scope["query_string"]:
        for name, value in request.query_params.multi_items():
            if "\x00" in name or "\x00" in value:
                raise ApiError(
                    422, "VALIDATION_ERROR", f"{name.replace(chr(0), '?')} holds a NUL character"
                )


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller of this request, allowed by the route's scope (and a
    path or query without NUL)."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _unauthorized("Missing API key: send 'Authorization: Bearer sk_…' (or pk_…)")
    if not key.startswith(("sk_", "pk_")):
        raise _unauthorized("Invalid API key: keys start with 'sk_' or 'pk_'")
    principal = state(request).keys.verify(key)
    if principal is None:
        raise _unauthorized("Invalid API key: this server does not know it")
    if principal.revoked_at is not None:
        raise _unauthorized(f"Invalid API key: it was revoked ({principal.revoked_at})")
    route = request.scope.get("route")
    # path_format: the template without convertors (``{customer_id}``, not ``{customer_id:path}``)
    path = str(getattr(route, "path_format", None) or getattr(route, "path", request.url.path))
    if principal.public and scopes.required(request.method, path) == scopes.SECRET:
        raise ApiError(
            403,
            "SECRET_KEY_REQUIRED",
            f"{request.method} {path} needs a secret key (sk_…): public keys may only write",
        )
    _check_nul(request)
    return principal


#: the authenticated caller of a route, already checked against the scope table
Caller = Annotated[Principal, Depends(authenticate)]
