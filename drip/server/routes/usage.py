"""``/v1/usage``: tracked usage (no billing), charges and the per-meter summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from drip.models import ChargeRequest, TrackUsageRequest

from ..deps import Caller, state
from ..http import json_response, parse, read_object
from ..openapi import body
from ..storage import usage

router = APIRouter(prefix="/v1")


@router.post("/usage/internal", openapi_extra=body(TrackUsageRequest))
async def track_usage(request: Request, who: Caller) -> Response:
    req = parse(TrackUsageRequest, await read_object(request))
    result = await run_in_threadpool(
        lambda: usage.track_usage(state(request).db, who.account_id, req, batch=False)
    )
    return json_response(result)


@router.post("/usage/internal/batch", openapi_extra=body(TrackUsageRequest))
async def track_usage_batch(request: Request, who: Caller) -> Response:
    req = parse(TrackUsageRequest, await read_object(request))
    result = await run_in_threadpool(
        lambda: usage.track_usage(state(request).db, who.account_id, req, batch=True)
    )
    return json_response(result, 202)


@router.post("/usage", openapi_extra=body(ChargeRequest))
async def charge(request: Request, who: Caller) -> Response:
    req = parse(ChargeRequest, await read_object(request))
    srv = state(request)
    result = await run_in_threadpool(usage.charge, srv.db, who.account_id, srv.pricing, req)
    return json_response(result)


@router.get("/usage/summary")
async def usage_summary(
    request: Request,
    who: Caller,
    customer_id: Annotated[str | None, Query(alias="customerId")] = None,
    meter: str | None = None,
) -> Response:
    """Secret keys only: totals across every customer are not for a browser."""
    result = await run_in_threadpool(
        usage.usage_summary, state(request).db, who.account_id, customer_id, meter
    )
    return json_response(result)
