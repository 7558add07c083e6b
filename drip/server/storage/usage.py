"""Usage records (tracked, not billed) and charges (priced and settled at once); each new one
is added to the rollups in its transaction (the summary that reads them is ``summary``).

Idempotency is the unique index on (account, family, key): the insert says whether it went in
(``INSERT … ON CONFLICT DO NOTHING RETURNING id``, the same on SQLite and PostgreSQL, never a
driver's row count), and a repeat answers with the first record.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Row, select

from drip._ids import new_id
from drip.models import (
    ChargeInfo,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    CustomerRef,
    TrackUsageBatchResult,
    TrackUsageRequest,
    TrackUsageResult,
)

from .. import clock
from ..errors import ApiError
from ..pricing import MAX_MICROS, Pricing, format_usdc
from .bulk import insert_ignore
from .customers import named_customer
from .database import Database
from .rollups import Rollup, model_of
from .schema import usage_records

__all__ = ["charge", "track_usage"]


def _store_usage(
    db: Database, account_id: int, values: dict[str, Any], req: CustomerRef, create: bool
) -> tuple[Row[Any], bool]:
    """Insert a usage record or charge for the customer ``req`` names (an external id is found
    or created in this transaction); (stored row, duplicate) — a repeated key gives the first."""
    u = usage_records
    key = values["idempotency_key"]
    with db.write() as conn:
        values["customer_id"] = named_customer(conn, account_id, req, create)
        inserted = conn.execute(
            insert_ignore(db.dialect, u).values(values).returning(u.c.id)
        ).scalar()
        if inserted is not None:
            where = u.c.id == inserted
        elif key is not None:
            where = (u.c.family == values["family"]) & (u.c.idempotency_key == key)
        else:
            where = None
        row = (
            None
            if where is None
            else conn.execute(select(u).where(u.c.account_id == account_id, where)).first()
        )
        if inserted is not None and row is not None:
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
    return row, inserted is None


def track_usage(
    db: Database,
    account_id: int,
    req: TrackUsageRequest,
    *,
    batch: bool,
    create_customers: bool = True,
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
            "usage_type": req.usage_type,
            "quantity": req.quantity,
            "units": req.units,
            "description": req.description,
            "idempotency_key": key,
            "meta": req.metadata,
            "timestamp": clock.field_time(req.timestamp, "timestamp", clock.now_iso()),
        },
        req,
        create_customers,
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


def charge(
    db: Database,
    account_id: int,
    pricing: Pricing,
    req: ChargeRequest,
    *,
    create_customers: bool = True,
) -> ChargeResult:
    """``POST /usage``: a usage record priced at the meter's flat price, settled at once."""
    if not 0 <= req.quantity < math.inf:
        raise ApiError(422, "VALIDATION_ERROR", "quantity: a charge quantity must be >= 0")
    amount = pricing.micros(req.usage_type, req.quantity)
    if amount > MAX_MICROS:
        raise ApiError(
            422,
            "AMOUNT_TOO_LARGE",
            f"quantity: the charge would be over {format_usdc(MAX_MICROS)} USDC",
        )
    row, duplicate = _store_usage(
        db,
        account_id,
        {
            "account_id": account_id,
            "id": new_id("use"),
            "family": "charge",
            "usage_type": req.usage_type,
            "quantity": req.quantity,
            "idempotency_key": req.idempotency_key,
            "meta": req.metadata,
            "timestamp": clock.now_iso(),
            "charge_id": new_id("chg"),
            "amount_micros": amount,
            "charge_status": ChargeStatus.CONFIRMED.value,
        },
        req,
        create_customers,
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
