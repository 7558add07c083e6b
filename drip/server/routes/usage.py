"""``/v1/usage``: tracked usage (no billing), charges and the per-meter summary."""

from __future__ import annotations

from typing import Annotated, Any

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


async def _track(request: Request, who: Caller, batch: bool) -> Any:
    req = parse(TrackUsageRequest, await read_object(request))
    srv = state(request)
    create = srv.settings.auto_create_customers
    return await run_in_threadpool(
        lambda: usage.track_usage(srv.db, who.account_id, req, batch=batch, create_customers=create)
    )


@router.post(
    "/usage/internal", openapi_extra=body(TrackUsageRequest), responses=answers(TrackUsageResult)
)
async def track_usage(request: Request, who: Caller) -> Response:
    return json_response(await _track(request, who, batch=False))


@router.post(
    "/usage/internal/batch",
    openapi_extra=body(TrackUsageRequest),
    responses=answers(TrackUsageBatchResult, 202),
)
async def track_usage_batch(request: Request, who: Caller) -> Response:
    return json_response(await _track(request, who, batch=True), 202)


@router.post("/usage", openapi_extra=body(ChargeRequest), responses=answers(ChargeResult))
async def charge(request: Request, who: Caller) -> Response:
    req = parse(ChargeRequest, await read_object(request))
    srv = state(request)
    result = await run_in_threadpool(
        lambda: usage.charge(
            srv.db,
            who.account_id,
            srv.pricing,
            req,
            create_customers=srv.settings.auto_create_customers,
        )
    )
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
    external_customer_id: Annotated[str | None, Query(alias="externalCustomerId")] = None,
) -> Response:
    """Secret keys only: totals across every customer are not for a browser. ``customerId``
    takes Drip's id or the customer's external id; an unknown customer is a 404."""
    groups = parse_group_by(group_by)
    start, end = parse_instant(since, "since"), parse_instant(until, "until")
    db = state(request).db

    def read() -> UsageSummary:  # one trip to the thread pool, one read transaction
        return summary.usage_summary(
            db, who.account_id, customer_id, meter, start, end, groups, external_customer_id
        )

    return json_response(await run_in_threadpool(read))
