"""Scoped look-ups: the customers, runs and workflows a request names, read once per request.

Every function takes the account's internal id and filters by it, so an id that belongs to
another account is simply not found. These are the only copies of these queries: the resource
modules (customers, usage, runs, timeline, ingest) all read references through here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Row, select

from ..errors import ApiError
from .bulk import chunked
from .schema import customers, runs, workflows

__all__ = [
    "customer_by_either",
    "customer_or_404",
    "customer_row",
    "existing_customers",
    "known_runs",
    "not_owned",
    "require_customer",
    "require_owner",
    "require_run",
    "run_row",
    "workflow_ids",
    "workflow_row",
]


def customer_row(conn: Connection, account_id: int, customer_id: str) -> Row[Any] | None:
    """The customer's row, or None."""
    return conn.execute(
        select(customers).where(customers.c.account_id == account_id, customers.c.id == customer_id)
    ).first()


def customer_by_either(conn: Connection, account_id: int, ref: str) -> Row[Any]:
    """The customer a read names by Drip's id or by its external id, or 404 CUSTOMER_NOT_FOUND
    (a filter on an unknown customer is an error, never an empty success)."""
    c = customers
    rows = conn.execute(
        select(c)
        .where(c.c.account_id == account_id, (c.c.id == ref) | (c.c.external_customer_id == ref))
        .limit(2)
    ).all()
    if not rows:
        raise ApiError(
            404,
            "CUSTOMER_NOT_FOUND",
            f"No customer with id or external id {ref!r} in this account",
        )
    # Drip's own id wins should a customer's external id look like another's cus_ id
    return next((r for r in rows if r.id == ref), rows[0])


def customer_or_404(conn: Connection, account_id: int, customer_id: str) -> Row[Any]:
    """The customer a read filters by (a query parameter), or 404 CUSTOMER_NOT_FOUND."""
    row = customer_row(conn, account_id, customer_id)
    if row is None:
        raise ApiError.not_found("customer", customer_id)
    return row


def require_customer(conn: Connection, account_id: int, customer_id: str, field: str) -> Row[Any]:
    """The customer row named in a request body, or 422 CUSTOMER_NOT_FOUND."""
    row = customer_row(conn, account_id, customer_id)
    if row is None:
        raise ApiError.missing_reference("customer", customer_id, field)
    return row


def existing_customers(conn: Connection, account_id: int, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are customers of the account (one query per 500 ids)."""
    found: set[str] = set()
    for part in chunked(sorted(set(ids))):
        found.update(
            conn.execute(
                select(customers.c.id).where(
                    customers.c.account_id == account_id, customers.c.id.in_(part)
                )
            ).scalars()
        )
    return found


def known_runs(conn: Connection, account_id: int, ids: Iterable[str]) -> dict[str, list[Any]]:
    """run id -> [customer id, status, started_by] for the ids that exist (one query per 500
    ids)."""
    found: dict[str, list[Any]] = {}
    for part in chunked(sorted(set(ids))):
        for rid, customer_id, status, started_by in conn.execute(
            select(runs.c.id, runs.c.customer_id, runs.c.status, runs.c.started_by).where(
                runs.c.account_id == account_id, runs.c.id.in_(part)
            )
        ):
            found[rid] = [customer_id, status, started_by]
    return found


def require_owner(row: Row[Any], owner: int | None) -> None:
    """403 RUN_NOT_OWNED when a public key (``owner``) would end a run it did not start."""
    if owner is not None and row.started_by != owner:
        raise ApiError(403, "RUN_NOT_OWNED", not_owned(row.id))


def not_owned(run_id: str) -> str:
    """The message of a refused run end."""
    return f"run {run_id!r} was not started by this public key: only its own runs can be ended"


def run_row(conn: Connection, account_id: int, run_id: str) -> Row[Any] | None:
    """The run with its workflow's name (``workflow_name``) and its customer's external id
    (``external_customer_id``), or None."""
    return conn.execute(
        select(
            runs,
            workflows.c.name.label("workflow_name"),
            customers.c.external_customer_id.label("external_customer_id"),
        )
        .join(
            workflows,
            (workflows.c.account_id == runs.c.account_id) & (workflows.c.id == runs.c.workflow_id),
            isouter=True,
        )
        .join(
            customers,
            (customers.c.account_id == runs.c.account_id) & (customers.c.id == runs.c.customer_id),
            isouter=True,
        )
        .where(runs.c.account_id == account_id, runs.c.id == run_id)
    ).first()


def require_run(conn: Connection, account_id: int, run_id: str) -> Row[Any]:
    """The run named in the path, or 404 RUN_NOT_FOUND."""
    row = run_row(conn, account_id, run_id)
    if row is None:
        raise ApiError.not_found("run", run_id)
    return row


def workflow_row(conn: Connection, account_id: int, ref: str) -> Row[Any] | None:
    """The workflow named by id or slug, or None."""
    return conn.execute(
        select(workflows).where(
            workflows.c.account_id == account_id,
            (workflows.c.id == ref) | (workflows.c.slug == ref),
        )
    ).first()


def workflow_ids(conn: Connection, account_id: int, refs: Iterable[str]) -> dict[str, str]:
    """ref (id or slug) -> workflow id, for the refs that exist."""
    found: dict[str, str] = {}
    for part in chunked(sorted(set(refs))):
        for wid, slug in conn.execute(
            select(workflows.c.id, workflows.c.slug).where(
                workflows.c.account_id == account_id,
                workflows.c.id.in_(part) | workflows.c.slug.in_(part),
            )
        ):
            found[wid] = found[slug] = wid
    return found
