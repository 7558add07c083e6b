"""Reads that stay fast: indexes for every filter, usage rollups, per-run meter totals.

- ``events.event_only`` (an event type recorded without a meter); rows stored before this
  revision cannot tell and count as meters.
- Indexes: a run's events in time order (replaces ``ix_events_run``), events and usage records by
  time and by customer and time (the partial hours of a usage window), runs by start time,
  alone and per customer and per workflow (run lists, keyset-paged).
- ``usage_rollups`` and ``run_meters``, filled here from the rows already stored (in chunks, with
  the same code ingest uses, so the sums are exact and the same as for new rows).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json
from typing import Any

from alembic import op
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    select,
)

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

_SEQ = BigInteger().with_variant(Integer(), "sqlite")
_ID = String(256)
_DECIMAL = Numeric(asdecimal=True).with_variant(Text(), "sqlite")

#: rows read per backfill step
_CHUNK = 50_000


def _seq() -> Column[int]:
    return Column("seq", _SEQ, primary_key=True, autoincrement=True)


def _account() -> Column[int]:
    return Column("account_id", Integer, nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(Column("event_only", Boolean, nullable=True))
    op.drop_index("ix_events_run", table_name="events")
    op.create_index("ix_events_run_time", "events", ["account_id", "run_id", "timestamp", "seq"])
    op.create_index("ix_events_time", "events", ["account_id", "timestamp"])
    op.create_index("ix_events_customer_time", "events", ["account_id", "customer_id", "timestamp"])
    op.create_index("ix_usage_time", "usage_records", ["account_id", "timestamp"])
    op.create_index(
        "ix_usage_customer_time", "usage_records", ["account_id", "customer_id", "timestamp"]
    )
    op.create_index("ix_runs_started", "runs", ["account_id", "started_at", "seq"])
    op.create_index(
        "ix_runs_customer_started", "runs", ["account_id", "customer_id", "started_at", "seq"]
    )
    op.create_index(
        "ix_runs_workflow_started", "runs", ["account_id", "workflow_id", "started_at", "seq"]
    )
    op.create_table(
        "usage_rollups",
        _seq(),
        _account(),
        Column("customer_id", _ID, nullable=False),
        Column("hour", String(13), nullable=False),
        Column("meter", _ID, nullable=False),
        Column("kind", String(8), nullable=False),
        Column("workflow_id", _ID, nullable=False),
        Column("model", _ID, nullable=False),
        Column("run_events", BigInteger, nullable=False),
        Column("usage_records", BigInteger, nullable=False),
        Column("charges", BigInteger, nullable=False),
        Column("quantity", _DECIMAL, nullable=False),
        Column("amount_micros", BigInteger, nullable=False),
        Index(
            "uq_usage_rollups",
            *("account_id", "customer_id", "hour", "meter", "kind", "workflow_id", "model"),
            unique=True,
        ),
    )
    op.create_table(
        "run_meters",
        _seq(),
        _account(),
        Column("run_id", _ID, nullable=False),
        Column("meter", _ID, nullable=False),
        Column("kind", String(8), nullable=False),
        Column("events", BigInteger, nullable=False),
        Column("quantity", _DECIMAL, nullable=False),
        Column("cost_units", _DECIMAL, nullable=False),
        Index("uq_run_meters", "account_id", "run_id", "meter", "kind", unique=True),
    )
    _backfill()


def _meta(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _backfill() -> None:
    """Roll up what is stored, per account, a chunk of rows at a time (upserts add up)."""
    # the rollup code of the running version: this revision's tables are the ones it writes
    from drip.server.storage import decimals
    from drip.server.storage.rollups import Rollup, model_of
    from drip.server.storage.schema import events, usage_records

    conn = op.get_bind()
    if conn.dialect.name == "sqlite":  # when run by Alembic's own command line, too
        decimals.register_sqlite(conn.connection.driver_connection)
    e, u = events, usage_records
    after = 0
    while True:
        rows = conn.execute(
            select(
                e.c.seq, e.c.account_id, e.c.run_id, e.c.customer_id, e.c.meter, e.c.timestamp,
                e.c.quantity, e.c.meta, e.c.cost_units,
            )
            .where(e.c.seq > after)
            .order_by(e.c.seq)
            .limit(_CHUNK)
        ).all()  # fmt: skip
        if not rows:
            break
        by_account: dict[int, Rollup] = {}
        for _, account, run_id, customer, meter, ts, quantity, meta, cost in rows:
            rollup = by_account.setdefault(account, Rollup())
            model = model_of(_meta(meta))
            rollup.event(run_id, customer, meter, False, ts, quantity, model, cost)
        for account, rollup in by_account.items():
            rollup.write(conn, account)
        after = rows[-1][0]
    after = 0
    while True:
        usage = conn.execute(
            select(
                u.c.seq, u.c.account_id, u.c.customer_id, u.c.usage_type, u.c.timestamp,
                u.c.quantity, u.c.family, u.c.amount_micros, u.c.meta,
            )
            .where(u.c.seq > after)
            .order_by(u.c.seq)
            .limit(_CHUNK)
        ).all()  # fmt: skip
        if not usage:
            break
        by_account = {}
        for _, account, customer, meter, ts, quantity, family, micros, meta in usage:
            rollup = by_account.setdefault(account, Rollup())
            rollup.usage_record(
                customer, meter, ts, quantity, family, micros, model_of(_meta(meta))
            )
        for account, rollup in by_account.items():
            rollup.write(conn, account)
        after = usage[-1][0]


def downgrade() -> None:
    op.drop_table("run_meters")
    op.drop_table("usage_rollups")
    for name in (
        "ix_runs_workflow_started",
        "ix_runs_customer_started",
        "ix_runs_started",
        "ix_usage_customer_time",
        "ix_usage_time",
        "ix_events_customer_time",
        "ix_events_time",
        "ix_events_run_time",
    ):
        table = name.split("_")[1]
        op.drop_index(name, table_name={"usage": "usage_records"}.get(table, table))
    op.create_index("ix_events_run", "events", ["account_id", "run_id"])
    with op.batch_alter_table("events") as batch:
        batch.drop_column("event_only")
