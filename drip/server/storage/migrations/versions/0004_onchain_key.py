"""On-chain addresses are unique per account by ``customers.onchain_key``, not by the address as
given: an EVM address (``0x`` and hex digits) is the same wallet in any letter case (EIP-55's
mixed-case checksum only adds letter case), so its key is the address in lower case; any other
address (Solana's base58, ...) is case-sensitive and is its own key. The address itself is kept
as the customer first gave it.

Customers stored before this revision with addresses that differ only in case keep both rows
(their usage stays theirs); the oldest holds the key, the others none: a request naming that
address finds the oldest.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import re

from alembic import op
from sqlalchemy import Column, Integer, String, bindparam, column, select, table, update

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

#: what ``drip.server.storage.customers.onchain_key`` takes as an EVM address (kept here as it
#: was when this revision was written: a migration does not change with the code)
_EVM = re.compile(r"0[xX][0-9a-fA-F]+")

#: rows updated per statement
_CHUNK = 5_000


def _key(address: str) -> str:
    return "0x" + address[2:].lower() if _EVM.fullmatch(address) else address


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(Column("onchain_key", String(256), nullable=True))
    customers = table(
        "customers",
        column("seq", Integer),
        column("account_id", Integer),
        column("onchain_address", String),
        column("onchain_key", String),
    )
    conn = op.get_bind()
    rows = conn.execute(
        select(customers.c.seq, customers.c.account_id, customers.c.onchain_address)
        .where(customers.c.onchain_address.is_not(None))
        .order_by(customers.c.seq)
    ).all()
    taken: set[tuple[int, str]] = set()
    keys = []
    for seq, account_id, address in rows:
        key = _key(address)
        if (account_id, key) not in taken:  # the oldest holder of a wallet keeps it
            taken.add((account_id, key))
            keys.append({"b_seq": seq, "b_key": key})

    statement = (
        update(customers)
        .where(customers.c.seq == bindparam("b_seq"))
        .values(onchain_key=bindparam("b_key"))
    )
    for start in range(0, len(keys), _CHUNK):
        conn.execute(statement, keys[start : start + _CHUNK])
    op.drop_index("uq_customers_onchain", table_name="customers")
    op.create_index(
        "uq_customers_onchain_key", "customers", ["account_id", "onchain_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_customers_onchain_key", table_name="customers")
    op.create_index(
        "uq_customers_onchain", "customers", ["account_id", "onchain_address"], unique=True
    )
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("onchain_key")
