"""Reading runs: details, timeline and the recent-runs list.

Costs in USDC are the flat price of each event's meter (``drip serve --price``) times its
quantity, computed when read: prices are server settings, not stored facts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select

from drip.models import (
    RunDetails,
    RunLinks,
    RunStatus,
    RunTimeline,
    RunTotals,
    TimelineEvent,
    TimelineSummary,
)

from .. import clock
from ..pricing import Pricing, format_usdc
from .database import Database
from .refs import require_run
from .runs import TIMELINE_MAX, number_text, run_result, run_totals
from .schema import customers, events, runs, workflows

__all__ = ["DETAILS_TIMELINE_LIMIT", "get_run", "get_timeline", "list_runs"]

#: events rendered inside ``GET /runs/{id}`` (for the 0.1.2 core async client); the timeline
#: endpoint has its own ``limit``
DETAILS_TIMELINE_LIMIT = 1000

# --------------------------------------------------------------------------------------------
# reading a run


def _timeline_event(row: Row[Any], pricing: Pricing) -> TimelineEvent:
    return TimelineEvent(
        id=row.id,
        event_type=row.event_type,
        timestamp=row.timestamp,
        quantity=row.quantity,
        units=row.units,
        description=row.description,
        cost_units=row.cost_units,
        cost_usdc=format_usdc(pricing.micros(row.meter, row.quantity)),
        correlation_id=row.correlation_id,
        parent_event_id=row.parent_event_id,
        span_id=row.span_id,
        duration_ms=row.duration_ms,
        outcome=row.outcome,
        error_type=row.error_type,
        meter=row.meter,
        metadata={**(row.meta or {}), "quantity": row.quantity, "units": row.units},
    )


def _read_run(
    db: Database, pricing: Pricing, account_id: int, run_id: str, limit: int
) -> tuple[Row[Any], str | None, list[Row[Any]], tuple[int, float, float | None], int]:
    e = events
    with db.read() as conn:
        row = require_run(conn, account_id, run_id)
        customer_name = conn.execute(
            select(customers.c.external_customer_id).where(
                customers.c.account_id == account_id, customers.c.id == row.customer_id
            )
        ).scalar()
        rows = conn.execute(
            select(e)
            .where(e.c.account_id == account_id, e.c.run_id == run_id)
            .order_by(e.c.timestamp, e.c.seq)
            .limit(limit)
        ).all()
        totals = run_totals(conn, account_id, run_id)
        micros = 0
        # priced per meter: one grouped query, not one price per event row
        for meter, quantity in conn.execute(
            select(e.c.meter, func.sum(e.c.quantity))
            .where(e.c.account_id == account_id, e.c.run_id == run_id)
            .group_by(e.c.meter)
        ):
            micros += pricing.micros(meter, quantity or 0)
    return row, customer_name, list(rows), totals, micros


def get_timeline(
    db: Database, pricing: Pricing, account_id: int, run_id: str, limit: int | None
) -> RunTimeline:
    """``GET /runs/{id}/timeline``: the run flat at the top, then its events in time order."""
    row, customer_name, rows, (count, quantity, cost), micros = _read_run(
        db, pricing, account_id, run_id, min(limit or TIMELINE_MAX, TIMELINE_MAX)
    )
    return RunTimeline(
        run_id=row.id,
        customer_id=row.customer_id,
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name or "",
        status=RunStatus(row.status),
        events=[_timeline_event(r, pricing) for r in rows],
        summary=TimelineSummary(
            total_events=count,
            total_quantity=number_text(quantity),
            total_cost_units=number_text(cost),
            total_charged_usdc=format_usdc(micros),
        ),
        customer_name=customer_name,
        external_customer_id=customer_name,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_ms=clock.duration_ms(row.started_at, row.ended_at),
        error_message=row.error_message,
        error_code=row.error_code,
        correlation_id=row.correlation_id,
        parent_run_id=row.parent_run_id,
        metadata=row.meta,
    )


def get_run(db: Database, pricing: Pricing, account_id: int, run_id: str) -> dict[str, Any]:
    """``GET /runs/{id}``: RunDetails, plus ``timeline`` and ``summary`` keys that the
    published core async client reads from this endpoint (contract §2.1.11)."""
    row, customer_name, rows, (count, quantity, cost), micros = _read_run(
        db, pricing, account_id, run_id, DETAILS_TIMELINE_LIMIT
    )
    details = RunDetails(
        id=row.id,
        customer_id=row.customer_id,
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name or "",
        status=RunStatus(row.status),
        totals=RunTotals(
            event_count=count,
            total_quantity=number_text(quantity),
            total_cost_units=number_text(cost),
        ),
        links=RunLinks(timeline=f"/v1/runs/{row.id}/timeline"),
        customer_name=customer_name,
        external_customer_id=customer_name,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_ms=clock.duration_ms(row.started_at, row.ended_at),
        error_message=row.error_message,
        error_code=row.error_code,
        correlation_id=row.correlation_id,
        metadata=row.meta,
        parent_run_id=row.parent_run_id,
        external_run_id=row.external_run_id,
    )
    body = details.model_dump(mode="json", by_alias=True)
    body["totals"]["totalChargedUsdc"] = format_usdc(micros)
    body["timeline"] = [
        _timeline_event(r, pricing).model_dump(mode="json", by_alias=True) for r in rows
    ]
    body["summary"] = f"{count} events"
    return body


def list_runs(db: Database, account_id: int, limit: int, customer_id: str | None) -> dict[str, Any]:
    """Newest runs first: ``{"data": [RunResult…], "count": n}``."""
    where = [runs.c.account_id == account_id]
    if customer_id is not None:
        where.append(runs.c.customer_id == customer_id)
    with db.read() as conn:
        rows = conn.execute(
            select(runs, workflows.c.name.label("workflow_name"))
            .join(
                workflows,
                (workflows.c.account_id == runs.c.account_id)
                & (workflows.c.id == runs.c.workflow_id),
                isouter=True,
            )
            .where(*where)
            .order_by(runs.c.seq.desc())
            .limit(limit)
        ).all()
    data = [run_result(r, duplicate=False).model_dump(mode="json", by_alias=True) for r in rows]
    return {"data": data, "count": len(data)}
