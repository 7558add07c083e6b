"""``GET /health`` (outside ``/v1``): the clients' ``ping``.

Without a key it answers healthy (load balancers, probes). With an ``Authorization`` header it
also checks the key, so ``drip.ping()`` verifies the setup a user is about to rely on: a key
this server does not know is a 401, as on every API route.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from drip.models import Health

from ..deps import authenticate
from ..http import json_response
from ..openapi import answers

router = APIRouter()


@router.get("/health", responses=answers(Health))
async def health(request: Request) -> Response:
    if request.headers.get("authorization"):
        await authenticate(request)
    return json_response(Health(status="healthy", timestamp=int(time.time())))
