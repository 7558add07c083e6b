"""Customers: create (with the conflict rules of the contract), read one, list a page, and
resolve the external ids that writes name (``externalCustomerId``).

An external id a write names is found, or created on first use, inside the write's own
transaction: ``INSERT … ON CONFLICT DO NOTHING`` on the unique (account, external id) index,
then a read of whichever row won, so concurrent first uses create exactly one customer. The
caller's request is the only request: nothing is looked up beforehand.

Every function takes the account's internal id and scopes every statement by it: an id of
another account is simply not found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Row, func, or_, select, update

from drip._ids import new_id
from drip.models import (
    CreateCustomerRequest,
    Customer,
    CustomerList,
    CustomerRef,
    CustomerStatus,
)

from .. import clock
from ..errors import ApiError
from .bulk import chunked, insert_ignore
from .cursors import decode_cursor, encode_cursor
from .database import Database
from .refs import customer_by_either, customer_row, require_customer
from .schema import customers

__all__ = [
    "create_customer",
    "customer_filter",
    "customer_model",
    "external_customers",
    "external_ids",
    "get_customer",
    "list_customers",
    "named_customer",
    "onchain_key",
]

#: the reason an unknown external id is refused when auto-creation is off
AUTO_CREATE_OFF = (
    "no customer with external id {ref!r} in this account, and this server does not create "
    "customers on first use (DRIP_AUTO_CREATE_CUSTOMERS=0): create it first"
)


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


#: an EVM address: ``0x`` and hex digits, the same wallet in any letter case (EIP-55)
_EVM = re.compile(r"0[xX][0-9a-fA-F]+")


def onchain_key(address: str | None) -> str | None:
    """An on-chain address as compared and kept unique (``customers.onchain_key``): an EVM
    address in lower case (``0xAbC…`` and ``0xabc…`` are one wallet; the mixed case is only
    EIP-55's checksum); any other address as given (base58 and others are case-sensitive)."""
    if address is None or not _EVM.fullmatch(address):
        return address
    return "0x" + address[2:].lower()


def _same_identity(row: Row[Any], req: CreateCustomerRequest) -> bool:
    return (
        not req.external_customer_id or row.external_customer_id == req.external_customer_id
    ) and (
        not req.onchain_address
        or onchain_key(row.onchain_address) == onchain_key(req.onchain_address)
    )


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
            customers.c.onchain_key == onchain_key(req.onchain_address),
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
        holds.append(c.c.onchain_key == onchain_key(req.onchain_address))
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
        "onchain_key": onchain_key(req.onchain_address),
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
                .values(
                    onchain_address=req.onchain_address,
                    onchain_key=onchain_key(req.onchain_address),
                    updated_at=now,
                )
            )
            existing = customer_row(conn, account_id, existing.id)
    if existing is not None and req.return_existing and _same_identity(existing, req):
        return customer_model(existing, duplicate=True), False
    # the field the stored customer holds: an unknown external id with a taken address is a
    # conflict on the address (it was reported as one on the external id)
    which = "externalCustomerId" if req.external_customer_id else "onchainAddress"
    if existing is not None and existing.external_customer_id != req.external_customer_id:
        which = "onchainAddress"
    raise ApiError(
        409,
        "CUSTOMER_ALREADY_EXISTS",
        f"A customer with this {which} already exists"
        + (" (with a different identity)" if existing is not None and req.return_existing else ""),
        existingCustomerId=None if existing is None else existing.id,
    )


def external_customers(
    conn: Connection, account_id: int, refs: Iterable[str], create: bool
) -> dict[str, str]:
    """external id -> customer id for ``refs``; missing ones are created when ``create``
    (race-free: see the module docstring), else left out of the answer."""
    wanted = sorted(set(refs))
    found = _by_external(conn, account_id, wanted)
    missing = [ref for ref in wanted if ref not in found]
    if missing and create:
        now = clock.now_iso()
        for part in chunked(missing):
            rows = [
                {
                    "account_id": account_id,
                    "id": new_id("cus"),
                    "external_customer_id": ref,
                    "is_internal": False,
                    "status": CustomerStatus.ACTIVE.value,
                    "created_at": now,
                    "updated_at": now,
                }
                for ref in part
            ]
            conn.execute(insert_ignore(conn.dialect.name, customers), rows)
        found.update(_by_external(conn, account_id, missing))
    return found


def _by_external(conn: Connection, account_id: int, refs: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in chunked(refs):
        for external, customer_id in conn.execute(
            select(customers.c.external_customer_id, customers.c.id).where(
                customers.c.account_id == account_id,
                customers.c.external_customer_id.in_(part),
            )
        ):
            found[external] = customer_id
    return found


def external_ids(conn: Connection, account_id: int, ids: Iterable[str]) -> dict[str, str | None]:
    """Drip id -> the customer's own id (None when it has none), for ``ids`` (read in the
    caller's transaction; those of no customer of the account are left out)."""
    found: dict[str, str | None] = {}
    for part in chunked(sorted(ids)):
        for customer_id, external in conn.execute(
            select(customers.c.id, customers.c.external_customer_id).where(
                customers.c.account_id == account_id, customers.c.id.in_(part)
            )
        ):
            found[customer_id] = external
    return found


def named_customer(conn: Connection, account_id: int, req: CustomerRef, create: bool) -> str:
    """The customer id a write request names (``customerId`` or ``externalCustomerId``);
    422 CUSTOMER_NOT_FOUND naming the reason when there is none."""
    if req.external_customer_id is None:
        assert req.customer_id is not None  # CustomerRef holds exactly one
        return str(require_customer(conn, account_id, req.customer_id, "customerId").id)
    ref = req.external_customer_id
    found = external_customers(conn, account_id, [ref], create).get(ref)
    if found is None:
        raise ApiError(
            422, "CUSTOMER_NOT_FOUND", "externalCustomerId: " + AUTO_CREATE_OFF.format(ref=ref)
        )
    return found


def customer_filter(
    conn: Connection, account_id: int, customer_id: str | None, external_customer_id: str | None
) -> str | None:
    """The Drip id of the customer a read filters on (``customerId`` may be either id;
    ``externalCustomerId`` is the external one), None for no filter; 404 for an unknown one.
    Read in the caller's transaction: the filter and the read see the same snapshot."""
    ref = external_customer_id or customer_id
    if ref is None:
        return None
    if external_customer_id is not None:
        found = _by_external(conn, account_id, [external_customer_id]).get(ref)
        if found is None:
            raise ApiError(
                404,
                "CUSTOMER_NOT_FOUND",
                f"No customer with external id {ref!r} in this account",
            )
        return found
    return str(customer_by_either(conn, account_id, ref).id)


def get_customer(db: Database, account_id: int, customer_id: str) -> Customer:
    """One customer, named by Drip's id or by its external id (404 when neither matches)."""
    with db.read() as conn:
        row = customer_by_either(conn, account_id, customer_id)
    return customer_model(row)


def list_customers(
    db: Database,
    account_id: int,
    limit: int,
    offset: int,
    status: CustomerStatus | None,
    cursor: str | None = None,
) -> CustomerList:
    """One page, oldest first; ``count`` is the number of matching customers. ``cursor`` (the
    previous page's ``nextCursor``) pages by keyset on ``seq``, never by ``OFFSET``."""
    where = [customers.c.account_id == account_id]
    if status is not None:
        where.append(customers.c.status == status.value)
    page = [*where]
    if cursor is not None:
        if offset:
            raise ApiError(422, "VALIDATION_ERROR", "cursor: not with offset")
        page.append(customers.c.seq > decode_cursor(cursor)[1])
    with db.read() as conn:
        rows = conn.execute(
            select(customers)
            .where(*page)
            .order_by(customers.c.seq)
            .limit(limit + 1)
            .offset(offset or None)
        ).all()
        total = conn.execute(select(func.count()).select_from(customers).where(*where)).scalar()
    more = len(rows) > limit
    rows = rows[:limit]
    return CustomerList(
        data=[customer_model(r) for r in rows],
        count=int(total or 0),
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].seq) if more else None,
        has_more=more,
    )
