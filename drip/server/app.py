"""The FastAPI application: ``create_app()``, the factory every way of serving goes through.

``create_app()`` with no arguments reads its settings from the environment (``settings``), so
``uvicorn --factory drip.server.app:create_app`` and ``drip serve --workers N`` build the same
app in each worker process. On start the schema is upgraded to the newest migration under a
database-wide lock, so workers starting together are safe.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from drip._version import __version__

from . import dashboard
from .deps import ServerState
from .errors import (
    ApiError,
    database_read_only,
    database_unavailable,
    error_body,
    storage_full,
)
from .http import InternalErrors, SecurityHeaders, json_response
from .keys import KeyStore
from .openapi import install_openapi
from .pricing import Pricing
from .routes import ROUTERS
from .settings import Settings
from .storage.database import Database

__all__ = ["create_app"]

logger = logging.getLogger("drip.server")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        parts.append(
            f"{'.'.join(loc)}: {err.get('msg', 'invalid value')}" if loc else str(err.get("msg"))
        )
    return "; ".join(parts) or "invalid request"


def _allowed_methods(request: Request) -> list[str]:
    """Every method our routes take at this request's path; a literal path (``/runs/record``)
    hides the parametrised ones it also fits (``/runs/{run_id}``), as in the OpenAPI document."""
    literal: set[str] = set()
    parametrised: set[str] = set()
    for router in (*ROUTERS, dashboard.router):
        for route in router.routes:
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] is not Match.NONE:
                found = parametrised if route.param_convertors else literal
                found.update(route.methods or ())
    return sorted(literal or parametrised)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        response = json_response(exc.body(), exc.status)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        return json_response(error_body(422, "VALIDATION_ERROR", _validation_message(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        message = "No such endpoint" if exc.status_code == 404 else str(exc.detail)
        body = error_body(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"), message)
        response = json_response(body, exc.status_code)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route with this path only
            allowed = _allowed_methods(request)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    async def _storage(request: Request, exc: Exception) -> Response:
        # answered here; what none of these words fit goes on to ``http.InternalErrors``
        words = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        for applies, said, status, code, message, passing in _STORAGE_ANSWERS:
            if applies(exc):
                logger.error("%s: %s %s failed (%s)", said, request.method, request.url.path,
                             words)  # fmt: skip
                response = json_response(error_body(status, code, message), status)
                if passing:  # worth a retry soon
                    response.headers["Retry-After"] = "1"
                return response
        raise exc

    for kind in _storage_errors():  # the operator's to fix; clients retry (5xx) or spool
        app.add_exception_handler(kind, _storage)
    # what no handler here answers (a bug): ``http.InternalErrors``, one JSON 500


#: the storage problems answered by name: (test, log words, status, code, message, passing)
_STORAGE_ANSWERS: tuple[tuple[Callable[[BaseException], bool], str, int, str, str, bool], ...] = (
    (storage_full, "the database's disk is full", 507, "STORAGE_FULL",
     "The server's storage is full; the request failed (see the server's log)", False),
    (database_read_only, "the database is read-only", 503, "DATABASE_READ_ONLY",
     "The server's database is read-only: the write failed (see the server's log)", False),
    (database_unavailable, "cannot reach the database", 503, "DATABASE_UNAVAILABLE",
     "The server cannot reach its database: the request failed; retry shortly", True),
)  # fmt: skip


def _storage_errors() -> list[type[Exception]]:
    """The exceptions a full disk or a database out of reach comes as: the drivers' (raw, or
    wrapped by SQLAlchemy), the pool's timeout, the OS's."""
    import sqlite3

    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    kinds: list[type[Exception]] = [DBAPIError, PoolTimeout, sqlite3.Error, OSError]
    try:
        import psycopg
    except ImportError:  # no PostgreSQL driver: not a PostgreSQL server
        return kinds
    return [*kinds, psycopg.Error]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """When a server starts serving: everything built so far (modules, the app, its schemas:
    over 100,000 objects) goes to the collector's permanent generation. A request that makes
    many objects (a 10,000-event timeline) triggers a full collection every few calls, and
    each walked that whole heap: ~130 ms on the benchmark host, paid by whichever request
    was running. (Run by uvicorn, so by ``drip serve`` and ``uvicorn --factory``; servers in
    tests start with ``lifespan="off"`` and leave their process's collector alone.) When the
    server stops, the database's connections are closed."""
    gc.collect()
    gc.freeze()
    yield
    # a graceful stop (SIGTERM, Ctrl-C): close the pool, so SQLite checkpoints its WAL into
    # the database file and removes the -wal and -shm files
    app.state.drip.db.dispose()


def create_app(
    database_url: str | None = None,
    *,
    pricing: Pricing | None = None,
    create_tables: bool = True,
    settings: Settings | None = None,
) -> FastAPI:
    """The Drip API. Settings: ``settings`` (default: from the environment), with
    ``database_url`` (``sqlite:///path.db`` or a PostgreSQL URL) and ``pricing`` overriding
    theirs; ``create_tables=False`` leaves the schema as it is."""
    settings = settings or Settings.from_env()
    if database_url is not None:
        settings = dataclasses.replace(settings, database_url=database_url)
    if pricing is None:
        pricing = Pricing.build(settings.prices, settings.default_price)
    db = Database(settings.database_url)
    if create_tables and settings.migrate:
        db.upgrade()
    app = FastAPI(
        title="Drip local server",
        version=__version__,
        docs_url="/docs" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,  # no OAuth here: one route fewer
        lifespan=_lifespan,
    )
    app.state.drip = ServerState(db=db, keys=KeyStore(db), pricing=pricing, settings=settings)
    _install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(dashboard.router)
    app.add_middleware(InternalErrors)  # inside SecurityHeaders: its 500s get the headers too
    app.add_middleware(SecurityHeaders)
    install_openapi(app)
    return app
