"""``GET /v1/runs``: runs newest start first, filtered, keyset-paged.

Pages are cut on (``started_at``, ``seq``), never with ``OFFSET``: the cursor names the last
run of a page and the next page starts strictly after it, through an index per filter
(account; account + customer; account + workflow — see ``schema.runs``), so page 1,000 costs
what page 1 costs. Every run that exists when paging starts is returned exactly once however
many runs arrive meanwhile (a run's start and ``seq`` never change). Each run carries its event
count and per-meter totals from ``run_meters`` (one indexed query per page), not from its events.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, select, tuple_

from drip.models import RunStatus

from .. import clock
from ..errors import ApiError
from . import decimals
from .cursors import decode_cursor, encode_cursor
from .database import Database
from .refs import customer_or_404
from .schema import customers, run_meters, runs, workflows

__all__ = ["list_runs"]


def _workflow_id(conn: Connection, account_id: int, ref: str) -> str:
    found = conn.execute(
        select(workflows.c.id).where(
            workflows.c.account_id == account_id,
            (workflows.c.id == ref) | (workflows.c.slug == ref),
        )
    ).scalar()
    if found is None:
        raise ApiError.not_found("workflow", ref)
    return str(found)


def _meters(conn: Connection, account_id: int, run_ids: list[str]) -> dict[str, list[Any]]:
    """run id -> its ``RunMeter`` dicts, and the event count in front."""
    out: dict[str, list[Any]] = {rid: [0] for rid in run_ids}
    if not run_ids:
        return out
    m = run_meters
    texts: dict[Any, str] = {}  # runs of one workflow often share their sums
    for run_id, meter, kind, count, quantity in conn.execute(
        select(m.c.run_id, m.c.meter, m.c.kind, m.c.events, m.c.quantity)
        .where(m.c.account_id == account_id, m.c.run_id.in_(run_ids))
        .order_by(m.c.run_id, m.c.meter, m.c.kind)
    ).all():
        entry = out[run_id]
        entry[0] += count
        text = texts.get(quantity)
        if text is None:
            text = texts[quantity] = _quantity(quantity)
        entry.append({"meter": meter, "kind": kind, "events": count, "quantity": text})
    return out


def _quantity(value: Any) -> str:
    return decimals.decimal_text(decimals.as_decimal(value))


def list_runs(
    db: Database,
    account_id: int,
    *,
    limit: int = 50,
    customer_id: str | None = None,
    workflow: str | None = None,
    status: RunStatus | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """One page: ``{"data": [RunSummary…], "count", "nextCursor", "hasMore"}`` (camelCase,
    built from the rows directly). ``since``/``until`` bound the start time, half-open."""
    r = runs
    where = [r.c.account_id == account_id]
    if status is not None:
        where.append(r.c.status == status.value)
    if since is not None:
        where.append(r.c.started_at >= since)
    if until is not None:
        where.append(r.c.started_at < until)
    if parent_run_id is not None:
        # a run's children (the dashboard's waterfall); few, found under the account's index
        where.append(r.c.parent_run_id == parent_run_id)
    if cursor is not None:
        after = decode_cursor(cursor)
        where.append(tuple_(r.c.started_at, r.c.seq) < tuple_(*after))
    with db.read() as conn:
        if customer_id is not None:
            customer_or_404(conn, account_id, customer_id)
            where.append(r.c.customer_id == customer_id)
        if workflow is not None:
            where.append(r.c.workflow_id == _workflow_id(conn, account_id, workflow))
        rows = conn.execute(
            select(
                r.c.seq,
                r.c.id,
                r.c.customer_id,
                r.c.workflow_id,
                r.c.status,
                r.c.correlation_id,
                r.c.created_at,
                r.c.parent_run_id,
                r.c.external_run_id,
                r.c.started_at,
                r.c.ended_at,
                workflows.c.name,
                customers.c.external_customer_id,
            )
            .select_from(
                r.outerjoin(
                    workflows,
                    and_(
                        workflows.c.account_id == r.c.account_id, workflows.c.id == r.c.workflow_id
                    ),
                ).outerjoin(
                    customers,
                    and_(
                        customers.c.account_id == r.c.account_id, customers.c.id == r.c.customer_id
                    ),
                )
            )
            .where(*where)
            .order_by(r.c.started_at.desc(), r.c.seq.desc())
            .limit(limit + 1)
        ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        meters = _meters(conn, account_id, [row.id for row in rows])
    data = []
    for row in rows:
        count, *per_meter = meters[row.id]
        data.append(
            {
                "id": row.id,
                "customerId": row.customer_id,
                "externalCustomerId": row.external_customer_id,
                "workflowId": row.workflow_id,
                "workflowName": row.name or "",
                "status": row.status,
                "correlationId": row.correlation_id,
                "createdAt": row.created_at,
                "parentRunId": row.parent_run_id,
                "externalRunId": row.external_run_id,
                "isDuplicate": False,
                "startedAt": row.started_at,
                "endedAt": row.ended_at,
                "durationMs": clock.duration_ms(row.started_at, row.ended_at),
                "eventCount": count,
                "meters": per_meter,
            }
        )
    last = rows[-1] if rows and more else None
    return {
        "data": data,
        "count": len(data),
        "nextCursor": None if last is None else encode_cursor(last.started_at, last.seq),
        "hasMore": more,
    }
