"""Queries for customers, workflows, usage records, charges and the usage summary.

Every function takes the account's internal id and scopes every statement by it: an id of
another account is simply not found. Runs and events live in ``storage_runs`` (writes) and
``storage_reads``; the batch ingestion endpoint in ``storage_ingest``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Row, func, or_, select, update

from drip._ids import new_id
from drip.models import (
    ChargeInfo,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    CreateCustomerRequest,
    CreateWorkflowRequest,
    Customer,
    CustomerList,
    CustomerStatus,
    TrackUsageBatchResult,
    TrackUsageRequest,
    TrackUsageResult,
    Workflow,
    WorkflowList,
)

from . import clock
from .db import Database, chunked, insert_ignore
from .errors import ApiError
from .pricing import Pricing, format_usdc
from .rollups import Rollup, model_of
from .schema import customers, usage_records, workflows

__all__ = [
    "charge",
    "create_customer",
    "create_workflow",
    "existing_customers",
    "get_customer",
    "list_customers",
    "list_workflows",
    "require_customer",
    "resolve_workflow",
    "track_usage",
]


def timestamp(value: str | None, field: str, default: str) -> str:
    """A client timestamp normalised, or 422 naming the field."""
    try:
        return clock.normalize(value, default)
    except ValueError as exc:
        raise ApiError(422, "VALIDATION_ERROR", f"{field}: {exc}") from None


# --------------------------------------------------------------------------------------------
# customers


def _customer(row: Row[Any], duplicate: bool = False) -> Customer:
    return Customer(
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        external_customer_id=row.external_customer_id,
        onchain_address=row.onchain_address,
        is_internal=bool(row.is_internal),
        status=CustomerStatus(row.status),
        metadata=row.meta,
        is_duplicate=duplicate,
    )


def _customer_row(conn: Connection, account_id: int, customer_id: str) -> Row[Any] | None:
    return conn.execute(
        select(customers).where(customers.c.account_id == account_id, customers.c.id == customer_id)
    ).first()


def require_customer(conn: Connection, account_id: int, customer_id: str, field: str) -> Row[Any]:
    """The customer row named in a request body, or 422 CUSTOMER_NOT_FOUND."""
    row = _customer_row(conn, account_id, customer_id)
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


def _same_identity(row: Row[Any], req: CreateCustomerRequest) -> bool:
    return (
        not req.external_customer_id or row.external_customer_id == req.external_customer_id
    ) and (not req.onchain_address or row.onchain_address == req.onchain_address)


def _fills_address(
    conn: Connection, account_id: int, row: Row[Any], req: CreateCustomerRequest
) -> bool:
    """The request names ``row`` by external id and adds an address no customer holds yet."""
    if not (req.external_customer_id and req.onchain_address and row.onchain_address is None):
        return False
    if row.external_customer_id != req.external_customer_id:
        return False
    taken = conn.execute(
        select(customers.c.id).where(
            customers.c.account_id == account_id,
            customers.c.onchain_address == req.onchain_address,
        )
    ).first()
    return taken is None


def _conflict(conn: Connection, account_id: int, req: CreateCustomerRequest) -> Row[Any] | None:
    """The customer that already holds the request's external id or on-chain address."""
    c = customers
    holds = []
    if req.external_customer_id:
        holds.append(c.c.external_customer_id == req.external_customer_id)
    if req.onchain_address:
        holds.append(c.c.onchain_address == req.onchain_address)
    return conn.execute(
        select(c).where(c.c.account_id == account_id, or_(*holds)).order_by(c.c.seq).limit(1)
    ).first()


def create_customer(
    db: Database, account_id: int, req: CreateCustomerRequest
) -> tuple[Customer, bool]:
    """(customer, created). An external id or on-chain address already taken is a 409 with
    ``existingCustomerId`` — unless ``returnExisting`` is set and the request names the same
    identity as the stored customer, which then answers as a duplicate."""
    now = clock.now_iso()
    customer_id = new_id("cus")
    values = {
        "account_id": account_id,
        "id": customer_id,
        "external_customer_id": req.external_customer_id,
        "onchain_address": req.onchain_address,
        "is_internal": bool(req.is_internal),
        "status": CustomerStatus.ACTIVE.value,
        "meta": req.metadata,
        "created_at": now,
        "updated_at": now,
    }
    with db.write() as conn:
        existing = _conflict(conn, account_id, req)
        if existing is None:
            conn.execute(insert_ignore(db.dialect, customers).values(values))
            row = _customer_row(conn, account_id, customer_id)
            if row is not None:
                return _customer(row), True
            existing = _conflict(conn, account_id, req)  # lost a race with another process
        elif req.return_existing and _fills_address(conn, account_id, existing, req):
            # the same external id, now with an address it did not have: complete the customer
            conn.execute(
                update(customers)
                .where(customers.c.account_id == account_id, customers.c.id == existing.id)
                .values(onchain_address=req.onchain_address, updated_at=now)
            )
            existing = _customer_row(conn, account_id, existing.id)
    if existing is not None and req.return_existing and _same_identity(existing, req):
        return _customer(existing, duplicate=True), False
    which = "externalCustomerId" if req.external_customer_id else "onchainAddress"
    raise ApiError(
        409,
        "CUSTOMER_ALREADY_EXISTS",
        f"A customer with this {which} already exists"
        + (" (with a different identity)" if existing is not None and req.return_existing else ""),
        existingCustomerId=None if existing is None else existing.id,
    )


def get_customer(db: Database, account_id: int, customer_id: str) -> Customer:
    with db.read() as conn:
        row = _customer_row(conn, account_id, customer_id)
    if row is None:
        raise ApiError.not_found("customer", customer_id)
    return _customer(row)


def list_customers(
    db: Database, account_id: int, limit: int, offset: int, status: CustomerStatus | None
) -> CustomerList:
    """One page, oldest first; ``count`` is the number of matching customers."""
    where = [customers.c.account_id == account_id]
    if status is not None:
        where.append(customers.c.status == status.value)
    with db.read() as conn:
        rows = conn.execute(
            select(customers).where(*where).order_by(customers.c.seq).limit(limit).offset(offset)
        ).all()
        total = conn.execute(select(func.count()).select_from(customers).where(*where)).scalar()
    return CustomerList(data=[_customer(r) for r in rows], count=int(total or 0))


# --------------------------------------------------------------------------------------------
# workflows


def _workflow(row: Row[Any]) -> Workflow:
    return Workflow(
        id=row.id,
        name=row.name,
        slug=row.slug,
        product_surface=row.product_surface,
        is_active=bool(row.is_active),
        created_at=row.created_at,
        description=row.description,
    )


def _looks_like_workflow_id(ref: str) -> bool:
    rest = ref[3:]
    return ref.startswith("wf_") and len(rest) == 32 and all(c in "0123456789abcdef" for c in rest)


def _title(slug: str) -> str:
    return slug.replace("_", " ").replace("-", " ").strip().title() or slug


def _insert_workflow(
    conn: Connection, account_id: int, slug: str, name: str, **extra: Any
) -> Row[Any]:
    """Insert a workflow unless its slug exists; either way return the stored row."""
    values = {
        "account_id": account_id,
        "id": new_id("wf"),
        "name": name,
        "slug": slug,
        "product_surface": extra.pop("product_surface", None) or "CUSTOM",
        "is_active": True,
        "created_at": clock.now_iso(),
        **extra,
    }
    conn.execute(insert_ignore(conn.dialect.name, workflows).values(values))
    row = conn.execute(
        select(workflows).where(workflows.c.account_id == account_id, workflows.c.slug == slug)
    ).first()
    assert row is not None
    return row


def resolve_workflow(conn: Connection, account_id: int, ref: str, field: str) -> Row[Any]:
    """The workflow a run names by id or slug; an unknown slug creates it.

    A string shaped like one of our workflow ids (``wf_`` + 32 hex) that names nothing is a
    422 rather than a new workflow called "Wf 0193…".
    """
    row = conn.execute(
        select(workflows).where(
            workflows.c.account_id == account_id,
            (workflows.c.id == ref) | (workflows.c.slug == ref),
        )
    ).first()
    if row is not None:
        return row
    if _looks_like_workflow_id(ref):
        raise ApiError.missing_reference("workflow", ref, field)
    return _insert_workflow(conn, account_id, ref, _title(ref))


def create_workflow(
    db: Database, account_id: int, req: CreateWorkflowRequest
) -> tuple[Workflow, bool]:
    """(workflow, created): an existing slug answers with the existing workflow."""
    with db.write() as conn:
        before = conn.execute(
            select(workflows.c.id).where(
                workflows.c.account_id == account_id, workflows.c.slug == req.slug
            )
        ).scalar()
        row = _insert_workflow(
            conn,
            account_id,
            req.slug,
            req.name,
            product_surface=req.product_surface,
            description=req.description,
            meta=req.metadata,
        )
    return _workflow(row), before is None


def list_workflows(db: Database, account_id: int) -> WorkflowList:
    """Every workflow of the account (unpaginated, as the published client needs)."""
    with db.read() as conn:
        rows = conn.execute(
            select(workflows).where(workflows.c.account_id == account_id).order_by(workflows.c.seq)
        ).all()
    return WorkflowList(data=[_workflow(r) for r in rows], count=len(rows))


# --------------------------------------------------------------------------------------------
# usage records and charges


def _store_usage(db: Database, account_id: int, values: dict[str, Any]) -> tuple[Row[Any], bool]:
    """Insert a usage record or charge; (stored row, duplicate) — a repeated key gives the first."""
    u = usage_records
    with db.write() as conn:
        require_customer(conn, account_id, values["customer_id"], "customerId")
        inserted = conn.execute(insert_ignore(db.dialect, u).values(values)).rowcount == 1
        where = (
            u.c.id == values["id"]
            if inserted
            else (u.c.family == values["family"])
            & (u.c.idempotency_key == values["idempotency_key"])
        )
        row = conn.execute(select(u).where(u.c.account_id == account_id, where)).first()
        if inserted and row is not None:
            rollup = Rollup()
            rollup.usage_record(
                row.customer_id,
                row.usage_type,
                row.timestamp,
                row.quantity,
                row.family,
                row.amount_micros,
                model_of(row.meta),
            )
            rollup.write(conn, account_id)
    if row is None:  # the id itself collided: only possible with a forged client id
        raise ApiError(409, "USAGE_ID_CONFLICT", "A usage record with this id already exists")
    return row, not inserted


def track_usage(
    db: Database, account_id: int, req: TrackUsageRequest, *, batch: bool
) -> TrackUsageResult | TrackUsageBatchResult:
    """``POST /usage/internal`` (and ``/batch``): record usage, no billing."""
    key = req.idempotency_key or (new_id("idem") if batch else None)
    row, duplicate = _store_usage(
        db,
        account_id,
        {
            "account_id": account_id,
            "id": new_id("use"),
            "family": "usage",
            "customer_id": req.customer_id,
            "usage_type": req.usage_type,
            "quantity": req.quantity,
            "units": req.units,
            "description": req.description,
            "idempotency_key": key,
            "meta": req.metadata,
            "timestamp": timestamp(req.timestamp, "timestamp", clock.now_iso()),
        },
    )
    message = "Duplicate request: the first result is returned" if duplicate else "Usage tracked"
    if batch:
        return TrackUsageBatchResult(
            success=True,
            customer_id=row.customer_id,
            usage_type=row.usage_type,
            quantity=row.quantity,
            idempotency_key=row.idempotency_key,
            pending_events=0,  # stored before the answer: nothing is left pending
            message=message,
        )
    return TrackUsageResult(
        success=True,
        usage_event_id=row.id,
        customer_id=row.customer_id,
        usage_type=row.usage_type,
        quantity=row.quantity,
        is_internal=True,
        message=message,
        is_duplicate=duplicate,
    )


def charge(db: Database, account_id: int, pricing: Pricing, req: ChargeRequest) -> ChargeResult:
    """``POST /usage``: a usage record priced at the meter's flat price, settled at once."""
    if req.quantity < 0:
        raise ApiError(422, "VALIDATION_ERROR", "quantity: a charge quantity must be >= 0")
    row, duplicate = _store_usage(
        db,
        account_id,
        {
            "account_id": account_id,
            "id": new_id("use"),
            "family": "charge",
            "customer_id": req.customer_id,
            "usage_type": req.usage_type,
            "quantity": req.quantity,
            "idempotency_key": req.idempotency_key,
            "meta": req.metadata,
            "timestamp": clock.now_iso(),
            "charge_id": new_id("chg"),
            "amount_micros": pricing.micros(req.usage_type, req.quantity),
            "charge_status": ChargeStatus.CONFIRMED.value,
        },
    )
    return ChargeResult(
        success=True,
        usage_event_id=row.id,
        is_duplicate=duplicate,
        charge=ChargeInfo(
            id=row.charge_id,
            amount_usdc=format_usdc(row.amount_micros or 0),
            status=ChargeStatus(row.charge_status),
        ),
    )
