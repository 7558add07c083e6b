"""Writing runs and run events: start, end, record, emit (reads: ``timeline``).

A run event belongs to its run's customer (copied onto the event row, so per-customer totals
need no join). An event without a quantity counts 1 — the published client's ``record_run``
fallback does the same, so both of its paths agree. Events may be added to a terminal run and a
terminal run may be ended again (the published ``run()`` and LangChain paths do both): the first
end wins, a later one answers the stored state as a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Row, func, or_, select, update

from drip._ids import new_id
from drip.models import (
    TERMINAL_RUN_STATUSES,
    BatchEventResult,
    EmitEventRequest,
    EmitEventsBatchResult,
    EndRunRequest,
    EndRunResult,
    EventResult,
    RecordRunEventCounts,
    RecordRunRequest,
    RecordRunResult,
    RecordRunSummaryRun,
    RunResult,
    RunStatus,
    StartRunRequest,
)

from .. import clock
from ..errors import ApiError, describe_validation_error
from .bulk import bulk_insert_ignore, bulk_insert_new, chunked, insert_ignore, lock_names
from .customers import named_customer
from .database import Database
from .refs import known_runs, require_owner, require_run, run_row
from .rollups import Rollup, model_of
from .schema import events, runs
from .workflows import resolve_workflow

__all__ = [
    "TERMINAL_STATUS_VALUES",
    "TIMELINE_MAX",
    "emit_event",
    "emit_events_batch",
    "end_run",
    "event_row",
    "number_text",
    "record_run",
    "run_result",
    "run_totals",
    "start_run",
]

#: most events one timeline request returns
TIMELINE_MAX = 10_000
#: the stored statuses of a run that has ended (the first end wins)
TERMINAL_STATUS_VALUES = sorted(s.value for s in TERMINAL_RUN_STATUSES)


def number_text(value: float | None) -> str:
    """A total as the wire's string: ``"1700"``, ``"0.25"``."""
    value = float(value or 0)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def event_row(
    account_id: int,
    customer_id: str,
    run_id: str,
    event_type: str,
    *,
    id: str | None,
    meter: str | None,
    quantity: float | None,
    timestamp: str,
    **fields: Any,
) -> dict[str, Any]:
    """One ``events`` row (missing quantity = 1; meter defaults to the event type)."""
    return {
        "account_id": account_id,
        "id": id or new_id("evt"),
        "run_id": run_id,
        "customer_id": customer_id,
        "event_type": event_type,
        "meter": meter or event_type,
        "quantity": 1.0 if quantity is None else quantity,
        "timestamp": timestamp,
        "event_only": True if meter is None else None,
        **fields,
    }


def roll_events(conn: Connection, account_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Add stored ``event_row`` rows to the rollups (same transaction)."""
    rollup = Rollup()
    for row in rows:
        rollup.event(
            row["run_id"],
            row["customer_id"],
            row["meter"],
            bool(row["event_only"]),
            row["timestamp"],
            row["quantity"],
            model_of(row.get("meta")),
            row.get("cost_units"),
        )
    rollup.write(conn, account_id)


def _request_event_row(
    account_id: int, customer_id: str, req: EmitEventRequest, now: str
) -> dict[str, Any]:
    return event_row(
        account_id,
        customer_id,
        req.run_id,
        req.event_type,
        id=req.id,
        meter=req.meter,
        quantity=req.quantity,
        timestamp=clock.field_time(req.timestamp, "timestamp", now),
        units=req.units,
        description=req.description,
        cost_units=req.cost_units,
        cost_currency=req.cost_currency,
        correlation_id=req.correlation_id,
        parent_event_id=req.parent_event_id,
        span_id=req.span_id,
        idempotency_key=req.idempotency_key,
        meta=req.metadata,
        duration_ms=clock.clamp_duration(req.duration_ms),
        outcome=req.outcome,
        error_type=req.error_type,
    )


def run_result(row: Row[Any], duplicate: bool) -> RunResult:
    return RunResult(
        id=row.id,
        customer_id=row.customer_id,
        external_customer_id=getattr(row, "external_customer_id", None),
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name or "",
        status=RunStatus(row.status),
        correlation_id=row.correlation_id,
        created_at=row.created_at,
        parent_run_id=row.parent_run_id,
        external_run_id=row.external_run_id,
        is_duplicate=duplicate,
    )


def _by_external_id(
    conn: Connection, account_id: int, customer_id: str, external_run_id: str | None
) -> Row[Any] | None:
    if not external_run_id:
        return None
    rid = conn.execute(
        select(runs.c.id)
        .where(
            runs.c.account_id == account_id,
            runs.c.customer_id == customer_id,
            runs.c.external_run_id == external_run_id,
        )
        .order_by(runs.c.seq)
        .limit(1)
    ).scalar()
    return None if rid is None else run_row(conn, account_id, rid)


def _stored_run(
    conn: Connection,
    account_id: int,
    req: StartRunRequest | RecordRunRequest,
    create_customers: bool,
) -> tuple[Row[Any] | None, str]:
    """The run a start or record request repeats (same client id, or same customer and
    externalRunId) and the customer's Drip id (resolved from either id; 422 if unknown)."""
    existing = run_row(conn, account_id, req.id) if req.id else None
    if existing is not None:
        return existing, str(existing.customer_id)
    customer_id = named_customer(conn, account_id, req, create_customers)
    if req.external_run_id:
        # no unique index holds (customer, externalRunId): on PostgreSQL, writers of the same
        # one take turns from here to their commit, so the later one finds the earlier's run
        lock_names(conn, [f"run-external:{account_id}:{customer_id}:{req.external_run_id}"])
    return _by_external_id(conn, account_id, customer_id, req.external_run_id), customer_id


def _run_values(
    account_id: int,
    run_id: str,
    customer_id: str,
    req: StartRunRequest | RecordRunRequest,
    workflow_id: str,
    started: str,
    now: str,
    owner: int | None,
) -> dict[str, Any]:
    """A new RUNNING run's row (a recorded run overrides status and end)."""
    return {
        "account_id": account_id,
        "id": run_id,
        "customer_id": customer_id,
        "workflow_id": workflow_id,
        "status": RunStatus.RUNNING.value,
        "external_run_id": req.external_run_id,
        "correlation_id": req.correlation_id,
        "meta": req.metadata,
        "started_at": started,
        "created_at": now,
        "started_by": owner,
    }


def start_run(
    db: Database,
    account_id: int,
    req: StartRunRequest,
    owner: int | None = None,
    *,
    create_customers: bool = True,
) -> RunResult:
    """``POST /runs``; a repeated client id or (customer, externalRunId) returns the stored run.
    ``owner``: the public key starting it (only that key may end it)."""
    now = clock.now_iso()
    started = clock.field_time(req.started_at, "startedAt", now)
    with db.write() as conn:
        existing, customer_id = _stored_run(conn, account_id, req, create_customers)
        if existing is not None:
            return run_result(existing, duplicate=True)
        workflow = resolve_workflow(conn, account_id, req.workflow_id, "workflowId")
        run_id = req.id or new_id("run")
        values = _run_values(account_id, run_id, customer_id, req, workflow.id, started, now, owner)
        values["parent_run_id"] = req.parent_run_id
        went_in = conn.execute(
            insert_ignore(db.dialect, runs).values(values).returning(runs.c.id)
        ).scalar()
        # None: another transaction stored this client id after the look-up (PostgreSQL)
        row = require_run(conn, account_id, run_id)
    return run_result(row, duplicate=went_in is None)


def run_totals(conn: Connection, account_id: int, run_id: str) -> tuple[int, float, float | None]:
    count, quantity, cost = conn.execute(
        select(func.count(), func.sum(events.c.quantity), func.sum(events.c.cost_units)).where(
            events.c.account_id == account_id, events.c.run_id == run_id
        )
    ).one()
    return int(count), float(quantity or 0), cost


def end_run(
    db: Database, account_id: int, run_id: str, req: EndRunRequest, owner: int | None = None
) -> EndRunResult:
    """``PATCH /runs/{id}``: end a run. The first end wins: a run that has already ended
    (COMPLETED, FAILED, CANCELLED or TIMEOUT) keeps its status, end time, error and metadata,
    and a later end, with the same status or another, answers 200 with the stored state and
    ``isDuplicate: true`` (the published ``run()`` ends a run FAILED when its COMPLETED end
    raised, so a 409 would replace the caller's exception). One exception: a run recorded whole
    without times (``/runs/record``: its start and end are the same instant) may be ended once
    more, since the published LangChain handler's ``start_run()`` records an empty COMPLETED run
    and ends it later with its real status. A public key (``owner``) may end only the runs it
    started (403 RUN_NOT_OWNED)."""
    if req.status not in TERMINAL_RUN_STATUSES:
        raise ApiError(
            422,
            "INVALID_STATUS",
            f"status: a run ends COMPLETED, FAILED, CANCELLED or TIMEOUT, not {req.status.value}",
        )
    ended = clock.field_time(req.ended_at, "endedAt", clock.now_iso())
    with db.write() as conn:
        row = require_run(conn, account_id, run_id)
        require_owner(row, owner)
        duplicate = row.status in TERMINAL_STATUS_VALUES and not _recorded(row)
        if not duplicate:
            meta = {**(row.meta or {}), **req.metadata} if req.metadata else row.meta
            # only while it has not ended: if another request ended it since our read
            # (PostgreSQL: we waited for its update), that end was first and this one changes
            # nothing, as for a second end sent afterwards
            went_in = conn.execute(
                update(runs)
                .where(
                    runs.c.account_id == account_id,
                    runs.c.id == run_id,
                    or_(
                        runs.c.status.not_in(TERMINAL_STATUS_VALUES),
                        runs.c.ended_at == runs.c.started_at,
                    ),
                )
                .values(
                    status=req.status.value,
                    ended_at=ended,
                    error_message=req.error_message,
                    error_code=req.error_code,
                    meta=meta,
                )
                .returning(runs.c.id)
            ).first()
            duplicate = went_in is None
            row = require_run(conn, account_id, run_id)
        count, _, cost = run_totals(conn, account_id, run_id)
    return EndRunResult(
        id=row.id,
        status=RunStatus(row.status),
        ended_at=row.ended_at,
        duration_ms=clock.duration_ms(row.started_at, row.ended_at),
        event_count=count,
        total_cost_units=None if cost is None else number_text(cost),
        is_duplicate=duplicate,
    )


def _recorded(row: Row[Any]) -> bool:
    """Whether a run was recorded whole without times (``/runs/record`` starts and ends it at
    one instant) and not ended since: an end that may still be replaced (see ``end_run``)."""
    return row.ended_at is not None and row.ended_at == row.started_at


def _event_result(row: Row[Any], duplicate: bool) -> EventResult:
    return EventResult(
        id=row.id,
        run_id=row.run_id,
        event_type=row.event_type,
        quantity=row.quantity,
        cost_units=row.cost_units,
        is_duplicate=duplicate,
        timestamp=row.timestamp,
    )


def _find_event(
    conn: Connection, account_id: int, id: str | None, key: str | None
) -> Row[Any] | None:
    for column, value in ((events.c.id, id), (events.c.idempotency_key, key)):
        if value:
            row = conn.execute(
                select(events).where(events.c.account_id == account_id, column == value)
            ).first()
            if row is not None:
                return row
    return None


def emit_event(db: Database, account_id: int, req: EmitEventRequest) -> EventResult:
    """``POST /run-events``; a repeated id or idempotency key returns the stored event."""
    now = clock.now_iso()
    with db.write() as conn:
        found = known_runs(conn, account_id, [req.run_id]).get(req.run_id)
        if found is None:
            raise ApiError.missing_reference("run", req.run_id, "runId")
        existing = _find_event(conn, account_id, req.id, req.idempotency_key)
        if existing is None:
            row = _request_event_row(account_id, found[0], req, now)
            went_in = conn.execute(
                insert_ignore(db.dialect, events).values(row).returning(events.c.id)
            ).scalar()
            if went_in is not None:
                roll_events(conn, account_id, [row])
                stored = _find_event(conn, account_id, row["id"], None)
                assert stored is not None  # this transaction's own row
                return _event_result(stored, duplicate=False)
            # PostgreSQL: another transaction stored the same id or key after the look-up
            # above; the insert waited for it to commit, so a new look-up sees its row
            existing = _find_event(conn, account_id, req.id, req.idempotency_key)
            if existing is None:
                raise ApiError(409, "EVENT_ID_CONFLICT", "An event with this id already exists")
    return _event_result(existing, duplicate=True)


def _validate_items(items: Sequence[Any]) -> list[EmitEventRequest | str]:
    out: list[EmitEventRequest | str] = []
    for i, item in enumerate(items):
        try:
            out.append(EmitEventRequest.model_validate(item))
        except ValidationError as exc:
            out.append("VALIDATION_ERROR: " + describe_validation_error(exc, prefix=f"events[{i}]"))
    return out


def _existing_events(
    conn: Connection, account_id: int, ids: list[str], keys: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(id -> id, key -> id) of the events that already exist."""
    by_id: dict[str, str] = {}
    by_key: dict[str, str] = {}
    for column, values, out in (
        (events.c.id, ids, by_id),
        (events.c.idempotency_key, keys, by_key),
    ):
        for part in chunked(sorted(set(values))):
            for eid, value in conn.execute(
                select(events.c.id, column).where(
                    events.c.account_id == account_id, column.in_(part)
                )
            ):
                out[value] = eid
    return by_id, by_key


def _answer_lost(
    conn: Connection,
    account_id: int,
    rows: Sequence[dict[str, Any]],
    row_at: Sequence[int],
    went_in: set[str],
    results: list[BatchEventResult],
) -> None:
    """The rows that did not go in (PostgreSQL: another transaction stored the same id or key
    after this one looked) answer as duplicates of the stored events: the insert waited for
    that transaction to commit, so a new look-up sees them."""
    lost = [(row, at) for row, at in zip(rows, row_at, strict=True) if row["id"] not in went_in]
    by_id, by_key = _existing_events(
        conn,
        account_id,
        [row["id"] for row, _ in lost],
        [row["idempotency_key"] for row, _ in lost if row["idempotency_key"]],
    )
    for row, at in lost:
        stored = by_key.get(row["idempotency_key"] or "") or by_id.get(row["id"], row["id"])
        results[at] = BatchEventResult(
            id=stored, event_type=results[at].event_type, is_duplicate=True
        )


def emit_events_batch(db: Database, account_id: int, items: Sequence[Any]) -> EmitEventsBatchResult:
    """``POST /run-events/batch``: per-item results; a bad item is skipped, not fatal."""
    parsed = _validate_items(items)
    now = clock.now_iso()
    results: list[BatchEventResult] = []
    rows: list[dict[str, Any]] = []
    row_at: list[int] = []  # the result of each row
    with db.write() as conn:
        valid = [p for p in parsed if isinstance(p, EmitEventRequest)]
        run_of = known_runs(conn, account_id, [p.run_id for p in valid])
        by_id, by_key = _existing_events(
            conn,
            account_id,
            [p.id for p in valid if p.id],
            [p.idempotency_key for p in valid if p.idempotency_key],
        )
        for item, raw in zip(parsed, items, strict=True):
            if isinstance(item, str):
                ident = raw.get("id") if isinstance(raw, dict) else None
                etype = (
                    raw.get("eventType", raw.get("event_type")) if isinstance(raw, dict) else None
                )
                results.append(
                    BatchEventResult(
                        id=ident if isinstance(ident, str) else "",
                        event_type=etype if isinstance(etype, str) else "",
                        skipped=True,
                        reason=item,
                    )
                )
                continue
            stored = by_id.get(item.id or "") or by_key.get(item.idempotency_key or "")
            if stored is not None:
                results.append(
                    BatchEventResult(id=stored, event_type=item.event_type, is_duplicate=True)
                )
                continue
            run = run_of.get(item.run_id)
            if run is None:
                results.append(
                    BatchEventResult(
                        id=item.id or "",
                        event_type=item.event_type,
                        skipped=True,
                        reason=f"RUN_NOT_FOUND: no run with id {item.run_id!r} in this account",
                    )
                )
                continue
            try:
                row = _request_event_row(account_id, run[0], item, now)
            except ApiError as exc:
                results.append(
                    BatchEventResult(
                        id=item.id or "",
                        event_type=item.event_type,
                        skipped=True,
                        reason=exc.message,
                    )
                )
                continue
            by_id[row["id"]] = row["id"]
            if item.idempotency_key:
                by_key[item.idempotency_key] = row["id"]
            rows.append(row)
            row_at.append(len(results))
            results.append(BatchEventResult(id=row["id"], event_type=item.event_type))
        went_in = bulk_insert_new(conn, events, account_id, rows)
        if went_in is not None:  # lost a race: roll only what this transaction stored
            _answer_lost(conn, account_id, rows, row_at, went_in, results)
            rows = [row for row in rows if row["id"] in went_in]
        roll_events(conn, account_id, rows)
    created = len(rows)
    duplicates = sum(r.is_duplicate for r in results)
    skipped = sum(r.skipped for r in results)
    return EmitEventsBatchResult(
        success=skipped == 0,
        created=created,
        duplicates=duplicates,
        skipped=skipped,
        events=results,
    )


def _status_mark(status: str) -> str:
    return {"COMPLETED": "\u2713", "FAILED": "\u2717"}.get(status, "\u25cb")


def record_run(
    db: Database,
    account_id: int,
    req: RecordRunRequest,
    owner: int | None = None,
    *,
    create_customers: bool = True,
) -> RecordRunResult:
    """``POST /runs/record``: a whole run in one transaction.

    A repeated client ``id`` or (customer, externalRunId) returns the stored run and reports
    its events as duplicates: the published client retries this POST without an idempotency key.
    """
    now = clock.now_iso()
    with db.write() as conn:
        existing, customer_id = _stored_run(conn, account_id, req, create_customers)
        if existing is None:
            workflow = resolve_workflow(conn, account_id, req.workflow, "workflow")
            run_id = req.id or new_id("run")
            terminal = req.status in TERMINAL_RUN_STATUSES
            values = _run_values(account_id, run_id, customer_id, req, workflow.id, now, now, owner)
            values.update(
                status=req.status.value,
                error_message=req.error_message,
                error_code=req.error_code,
                ended_at=now if terminal else None,
            )
            went_in = conn.execute(
                insert_ignore(db.dialect, runs).values(values).returning(runs.c.id)
            ).scalar()
            if went_in is None:  # another transaction stored this client id (PostgreSQL)
                existing = require_run(conn, account_id, run_id)
        if existing is not None:
            run_id, created, duplicates = existing.id, 0, len(req.events)
        else:
            rows = [
                event_row(
                    account_id,
                    customer_id,
                    run_id,
                    e.event_type,
                    id=None,
                    meter=None,
                    quantity=e.quantity,
                    timestamp=now,
                    units=e.units,
                    description=e.description,
                    cost_units=e.cost_units,
                    correlation_id=req.correlation_id,
                    meta=e.metadata,
                )
                for e in req.events
            ]
            created, duplicates = bulk_insert_ignore(conn, events, rows), 0
            roll_events(conn, account_id, rows)  # a new run: every event is new
        row = require_run(conn, account_id, run_id)
        _, _, cost = run_totals(conn, account_id, run_id)
    duration = clock.duration_ms(row.started_at, row.ended_at)
    count = created + duplicates
    return RecordRunResult(
        run=RecordRunSummaryRun(
            id=row.id,
            workflow_id=row.workflow_id,
            workflow_name=row.workflow_name or "",
            status=RunStatus(row.status),
            duration_ms=duration,
        ),
        events=RecordRunEventCounts(created=created, duplicates=duplicates),
        total_cost_units=None if cost is None else number_text(cost),
        summary=f"{_status_mark(row.status)} {row.workflow_name}: {count} events recorded ({duration or 0}ms)",
    )
