"""Customers: create (with the conflict rules of the contract), read one, list a page.

Every function takes the account's internal id and scopes every statement by it: an id of
another account is simply not found.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, func, or_, select, update

from drip._ids import new_id
from drip.models import CreateCustomerRequest, Customer, CustomerList, CustomerStatus

from .. import clock
from ..errors import ApiError
from .bulk import insert_ignore
from .database import Database
from .refs import customer_row
from .schema import customers

__all__ = ["create_customer", "customer_model", "get_customer", "list_customers"]


def customer_model(row: Row[Any], duplicate: bool = False) -> Customer:
    """A customer row as the wire model."""
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
            row = customer_row(conn, account_id, customer_id)
            if row is not None:
                return customer_model(row), True
            existing = _conflict(conn, account_id, req)  # lost a race with another process
        elif req.return_existing and _fills_address(conn, account_id, existing, req):
            # the same external id, now with an address it did not have: complete the customer
            conn.execute(
                update(customers)
                .where(customers.c.account_id == account_id, customers.c.id == existing.id)
                .values(onchain_address=req.onchain_address, updated_at=now)
            )
            existing = customer_row(conn, account_id, existing.id)
    if existing is not None and req.return_existing and _same_identity(existing, req):
        return customer_model(existing, duplicate=True), False
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
        row = customer_row(conn, account_id, customer_id)
    if row is None:
        raise ApiError.not_found("customer", customer_id)
    return customer_model(row)


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
    return CustomerList(data=[customer_model(r) for r in rows], count=int(total or 0))
