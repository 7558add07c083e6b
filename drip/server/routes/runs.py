"""``/v1/runs`` and ``/v1/run-events``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from drip.models import (
    EmitEventRequest,
    EmitEventsBatchRequest,
    EmitEventsBatchResult,
    EndRunRequest,
    EndRunResult,
    EventResult,
    RecordRunRequest,
    RecordRunResult,
    RunDetails,
    RunList,
    RunResult,
    RunStatus,
    RunTimeline,
    StartRunRequest,
)

from ..deps import Caller, state
from ..errors import ApiError
from ..http import json_response, parse, read_object
from ..ingest_parse import MAX_ITEMS
from ..openapi import answers, body
from ..storage import run_list
from ..storage import runs as storage_runs
from ..storage import timeline as storage_reads
from ..storage.summary import parse_instant

router = APIRouter(prefix="/v1")


@router.post("/runs", openapi_extra=body(StartRunRequest), responses=answers(RunResult, 200, 201))
async def start_run(request: Request, who: Caller) -> Response:
    req = parse(StartRunRequest, await read_object(request))
    srv = state(request)
    run = await run_in_threadpool(
        lambda: storage_runs.start_run(
            srv.db,
            who.account_id,
            req,
            who.owner,
            create_customers=srv.settings.auto_create_customers,
        )
    )
    return json_response(run, 200 if run.is_duplicate else 201)


@router.get("/runs", responses=answers(RunList))
async def list_runs(
    request: Request,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    customer_id: Annotated[str | None, Query(alias="customerId")] = None,
    workflow: Annotated[str | None, Query(description="workflow id or slug")] = None,
    status: RunStatus | None = None,
    since: Annotated[str | None, Query(description="started at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="started before (ISO 8601)")] = None,
    cursor: Annotated[str | None, Query(description="nextCursor of the previous page")] = None,
    external_customer_id: Annotated[str | None, Query(alias="externalCustomerId")] = None,
    parent_run_id: Annotated[str | None, Query(alias="parentRunId")] = None,
) -> Response:
    """Newest start first, keyset-paged (extension, for the dashboard and the CLI).
    ``customerId`` takes Drip's id or the customer's external id (an unknown one is a 404);
    ``parentRunId`` lists a run's child runs."""
    db = state(request).db

    def read() -> dict[str, Any]:  # one trip to the thread pool, one read transaction
        return run_list.list_runs(
            db,
            who.account_id,
            limit=limit,
            customer_id=customer_id,
            external_customer_id=external_customer_id,
            workflow=workflow,
            status=status,
            since=parse_instant(since, "since"),
            until=parse_instant(until, "until"),
            cursor=cursor,
            parent_run_id=parent_run_id,
        )

    return json_response(await run_in_threadpool(read))


@router.post(
    "/runs/record", openapi_extra=body(RecordRunRequest), responses=answers(RecordRunResult, 201)
)
async def record_run(request: Request, who: Caller) -> Response:
    req = parse(RecordRunRequest, await read_object(request))
    srv = state(request)
    result = await run_in_threadpool(
        lambda: storage_runs.record_run(
            srv.db,
            who.account_id,
            req,
            who.owner,
            create_customers=srv.settings.auto_create_customers,
        )
    )
    return json_response(result, 201)


@router.patch("/runs/{run_id}", openapi_extra=body(EndRunRequest), responses=answers(EndRunResult))
async def end_run(request: Request, who: Caller, run_id: str) -> Response:
    req = parse(EndRunRequest, await read_object(request))
    result = await run_in_threadpool(
        storage_runs.end_run, state(request).db, who.account_id, run_id, req, who.owner
    )
    return json_response(result)


@router.get("/runs/{run_id}", responses=answers(RunDetails))
async def get_run(request: Request, who: Caller, run_id: str) -> Response:
    srv = state(request)
    body = await run_in_threadpool(
        storage_reads.get_run, srv.db, srv.pricing, who.account_id, run_id
    )
    return json_response(body)


@router.get("/runs/{run_id}/timeline", responses=answers(RunTimeline))
async def get_timeline(
    request: Request,
    who: Caller,
    run_id: str,
    limit: Annotated[int | None, Query(ge=1, le=storage_runs.TIMELINE_MAX)] = None,
    cursor: Annotated[str | None, Query(description="nextCursor of the previous page")] = None,
) -> Response:
    """Events in time order, a page of ``limit`` (summary totals always cover the whole run);
    ``nextCursor`` asks for the next page. ``includeAnomalies`` and ``collapseRetries`` are
    accepted and ignored."""
    srv = state(request)
    timeline = await run_in_threadpool(
        storage_reads.get_timeline, srv.db, srv.pricing, who.account_id, run_id, limit, cursor
    )
    return Response(content=timeline, media_type="application/json")


@router.post(
    "/run-events", openapi_extra=body(EmitEventRequest), responses=answers(EventResult, 200, 201)
)
async def emit_event(request: Request, who: Caller) -> Response:
    req = parse(EmitEventRequest, await read_object(request))
    event = await run_in_threadpool(storage_runs.emit_event, state(request).db, who.account_id, req)
    return json_response(event, 200 if event.is_duplicate else 201)


@router.post(
    "/run-events/batch",
    openapi_extra=body(EmitEventsBatchRequest),
    responses=answers(EmitEventsBatchResult, 201),
)
async def emit_events_batch(request: Request, who: Caller) -> Response:
    """Items are validated one by one (snake_case accepted); a bad item is skipped."""
    items = (await read_object(request)).get("events")
    if not isinstance(items, list):
        raise ApiError(422, "VALIDATION_ERROR", "events: must be a list of events")
    if len(items) > MAX_ITEMS:  # as /v1/ingest: one request holds the write lock so long
        raise ApiError(413, "TOO_MANY_ITEMS", f"events: at most {MAX_ITEMS} events per request")
    result = await run_in_threadpool(
        storage_runs.emit_events_batch, state(request).db, who.account_id, items
    )
    return json_response(result, 201)
