"""``GET /health`` (outside ``/v1``, no key): the published client's ``ping``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

from drip.models import Health

from ..http import json_response

router = APIRouter()


@router.get("/health", response_model=Health)
async def health() -> Response:
    return json_response(Health(status="healthy", timestamp=int(time.time())))
