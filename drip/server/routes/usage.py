"""``/v1/usage``: tracked usage (no billing), charges and the per-meter summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from drip.models import (
    ChargeRequest,
    ChargeResult,
    TrackUsageBatchResult,
    TrackUsageRequest,
    TrackUsageResult,
    UsageSummary,
)

from ..deps import Caller, state
from ..http import json_response, parse, read_object
from ..openapi import answers, body
from ..storage import summary, usage
from ..storage.summary import parse_group_by, parse_instant

router = APIRouter(prefix="/v1")


@router.post(
    "/usage/internal", openapi_extra=body(TrackUsageRequest), responses=answers(TrackUsageResult)
)
async def track_usage(request: Request, who: Caller) -> Response:
    req = parse(TrackUsageRequest, await read_object(request))
    result = await run_in_threadpool(
        lambda: usage.track_usage(state(request).db, who.account_id, req, batch=False)
    )
    return json_response(result)


@router.post(
    "/usage/internal/batch",
    openapi_extra=body(TrackUsageRequest),
    responses=answers(TrackUsageBatchResult, 202),
)
async def track_usage_batch(request: Request, who: Caller) -> Response:
    req = parse(TrackUsageRequest, await read_object(request))
    result = await run_in_threadpool(
        lambda: usage.track_usage(state(request).db, who.account_id, req, batch=True)
    )
    return json_response(result, 202)


@router.post("/usage", openapi_extra=body(ChargeRequest), responses=answers(ChargeResult))
async def charge(request: Request, who: Caller) -> Response:
    req = parse(ChargeRequest, await read_object(request))
    srv = state(request)
    result = await run_in_threadpool(usage.charge, srv.db, who.account_id, srv.pricing, req)
    return json_response(result)


@router.get("/usage/summary", responses=answers(UsageSummary))
async def usage_summary(
    request: Request,
    who: Caller,
    customer_id: Annotated[str | None, Query(alias="customerId")] = None,
    meter: str | None = None,
    since: Annotated[str | None, Query(description="from (ISO 8601), inclusive")] = None,
    until: Annotated[str | None, Query(description="to (ISO 8601), exclusive")] = None,
    group_by: Annotated[
        list[str] | None,
        Query(alias="groupBy", description="meter, customer, workflow, day, hour, model"),
    ] = None,
) -> Response:
    """Secret keys only: totals across every customer are not for a browser."""
    groups = parse_group_by(group_by)
    start, end = parse_instant(since, "since"), parse_instant(until, "until")
    result = await run_in_threadpool(
        lambda: summary.usage_summary(
            state(request).db, who.account_id, customer_id, meter, start, end, groups
        )
    )
    return json_response(result)
