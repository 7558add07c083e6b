"""``POST /v1/ingest``: the SDK's batch endpoint (applied by ``storage.ingest``), and its answer.

The answer's JSON is written directly, in full (an entry per item) or, with
``?results=compact`` (what the SDK asks for), as a status letter per item plus the rejected
items' details: for 5,000 events that is far cheaper than building models.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from drip.models import IngestRequest, IngestResult

from ..deps import Caller, state
from ..http import read_body
from ..openapi import answers, body
from ..storage.ingest import Outcome, ingest

router = APIRouter(prefix="/v1")


@router.post("/ingest", openapi_extra=body(IngestRequest), responses=answers(IngestResult))
async def post_ingest(request: Request, who: Caller) -> Response:
    raw = await read_body(request)
    compact = request.query_params.get("results") == "compact"
    # validation runs in the worker thread too, so a big batch never stalls the event loop
    srv = state(request)
    outcome = await run_in_threadpool(
        ingest, srv.db, who.account_id, raw, who.owner, srv.settings.auto_create_customers
    )
    return Response(content=answer(outcome, compact), media_type="application/json")


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


#: in the compact answer (the SDK's): this server takes ``events`` items, packed ones too
_COLUMNS = ',"columns":true,"packed":true'

_LETTERS = {"created": "c", "duplicate": "d", "updated": "u", "rejected": "r"}


def _entry(index: int, ident: str | None, status: str, problem: tuple[str, str] | None) -> str:
    if problem is None:
        tail = '"code":null,"message":null}'
    else:
        tail = f'"code":{_text(problem[0])},"message":{_text(problem[1])}}}'
    return f'{{"index":{index},"id":{_text(ident)},"status":"{status}",{tail}'


def answer(outcome: Outcome, compact: bool) -> bytes:
    """The ``IngestResult`` JSON (camelCase), written directly: an entry per item (as it always
    was: no ``statuses`` key), or when ``compact`` a status letter per item and entries for the
    rejected items."""
    ids, statuses, problems = outcome
    if compact:
        letters = "".join(map(_LETTERS.__getitem__, statuses))
        entries = [_entry(i, ids[i], statuses[i], problems[i]) for i in sorted(problems)]
        head = f'{{"results":[{",".join(entries)}],"statuses":"{letters}"'
    else:
        get = problems.get
        entries = [_entry(i, ident, statuses[i], get(i)) for i, ident in enumerate(ids)]
        head = f'{{"results":[{",".join(entries)}]'
    created, duplicates, updated, rejected = (
        statuses.count(status) for status in ("created", "duplicate", "updated", "rejected")
    )
    return (
        f'{head},"created":{created},"duplicates":{duplicates},"updated":{updated},'
        f'"rejected":{rejected}{_COLUMNS if compact else ""}}}'
    ).encode()
