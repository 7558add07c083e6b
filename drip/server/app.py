"""The FastAPI application: state, routers and the handlers that keep every error JSON."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from drip._version import __version__
from drip.models import Health

from .auth import KeyStore
from .db import Database
from .errors import ApiError, error_body
from .pricing import Pricing
from .wire import json_response

__all__ = ["ServerState", "create_app", "state"]

logger = logging.getLogger("drip.server")


@dataclass
class ServerState:
    """What every request needs: the database, the keys and the prices."""

    db: Database
    keys: KeyStore
    pricing: Pricing


def state(request: Request) -> ServerState:
    """The server state of the app handling ``request``."""
    found: ServerState = request.app.state.drip
    return found


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        parts.append(
            f"{'.'.join(loc)}: {err.get('msg', 'invalid value')}" if loc else str(err.get("msg"))
        )
    return "; ".join(parts) or "invalid request"


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
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        message = "No such endpoint" if exc.status_code == 404 else str(exc.detail)
        body = error_body(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"), message)
        return json_response(body, exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_response(
            error_body(500, "INTERNAL_ERROR", "The server failed; see its log for details"), 500
        )


def create_app(
    database_url: str, *, pricing: Pricing | None = None, create_tables: bool = True
) -> FastAPI:
    """The Drip API over ``database_url`` (``sqlite:///path.db`` or a PostgreSQL URL)."""
    from . import dashboard, routes_customers, routes_ingest, routes_runs, routes_usage

    db = Database(database_url)
    if create_tables:
        db.create_tables()
    app = FastAPI(
        title="Drip local server",
        version=__version__,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.drip = ServerState(db=db, keys=KeyStore(db), pricing=pricing or Pricing())
    _install_error_handlers(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:
        return json_response(Health(status="healthy", timestamp=int(time.time())))

    for module in (routes_customers, routes_usage, routes_runs, routes_ingest):
        app.include_router(module.router, prefix="/v1")
    app.include_router(dashboard.router)
    return app
