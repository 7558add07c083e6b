"""``POST /v1/ingest``: the SDK's batch endpoint (see ``storage_ingest``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from . import storage_ingest
from .app import state
from .auth import Principal, authenticate
from .wire import read_body

router = APIRouter()


@router.post("/ingest")
async def ingest(request: Request, who: Annotated[Principal, Depends(authenticate)]) -> Response:
    raw = await read_body(request)
    compact = request.query_params.get("results") == "compact"
    # validation runs in the worker thread too, so a big batch never stalls the event loop
    answer = await run_in_threadpool(
        storage_ingest.ingest, state(request).db, who.account_id, raw, compact
    )
    return Response(content=answer, media_type="application/json")
