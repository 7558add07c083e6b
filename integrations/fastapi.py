"""FastAPI: the pure ASGI ``DripMiddleware`` of ``drip.integrations.asgi``, under FastAPI's name.

::

    from fastapi import FastAPI
    from drip.integrations.fastapi import DripMiddleware

    app = FastAPI()
    app.add_middleware(DripMiddleware, customer=lambda request: request.headers.get("x-customer"))

Routes are named by their template with the ``include_router`` prefix (``GET /v1/items/{item_id}``).
"""

from __future__ import annotations

from ._requires import requires

requires("fastapi", extra="fastapi")

from .asgi import DripMiddleware  # noqa: E402  (after the check that names the extra)

__all__ = ["DripMiddleware"]
