"""The tables of the local server (SQLAlchemy Core; SQLite and PostgreSQL).

Every table has an integer ``seq`` primary key (SQLite's rowid, so inserts append cheaply and
``ORDER BY seq`` is insertion order) and an ``account_id``; public ids such as ``cus_…`` or a
client's ``evt_…`` are unique per account, never globally, so two accounts may use the same id.

Idempotency lives in unique indexes: (account, family, key) for usage records and charges,
(account, key) for run events. Both are partial (``key IS NOT NULL``): requests without a key are
never de-duplicated, and rows without one cost the index nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    text,
)

__all__ = [
    "accounts",
    "api_keys",
    "customers",
    "events",
    "metadata",
    "run_meters",
    "runs",
    "usage_records",
    "usage_rollups",
    "workflows",
]

metadata = MetaData()

# "INTEGER PRIMARY KEY" exactly, so SQLite uses the rowid; BIGINT identity elsewhere.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")
_ID = String(256)
_TIME = String(40)
_JSON = JSON(none_as_null=True)
_WITH_KEY = text("idempotency_key IS NOT NULL")


def _seq() -> Column[int]:
    return Column("seq", _SEQ, primary_key=True, autoincrement=True)


def _account() -> Column[int]:
    return Column("account_id", Integer, nullable=False)


accounts = Table(
    "accounts",
    metadata,
    _seq(),
    Column("name", String(256), nullable=False, unique=True),
    Column("created_at", _TIME, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    _seq(),
    _account(),
    # SHA-256 hex of the key; the key itself is never stored
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),  # "secret" | "public"
    Column("hint", String(16), nullable=False),  # the first characters, for listings
    Column("created_at", _TIME, nullable=False),
    # ``drip keys revoke`` (revision 0005): a revoked key is refused with 401 from then on
    Column("revoked_at", _TIME),
    Column("revoked_by", String(256)),
)

customers = Table(
    "customers",
    metadata,
    _seq(),
    _account(),
    Column("id", _ID, nullable=False),
    Column("external_customer_id", _ID),
    Column("onchain_address", _ID),
    # the address as compared: an EVM (0x hex) address in lower case (customers.onchain_key)
    Column("onchain_key", _ID),
    Column("is_internal", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),
    Column("meta", _JSON),
    Column("created_at", _TIME, nullable=False),
    Column("updated_at", _TIME, nullable=False),
    Index("uq_customers_id", "account_id", "id", unique=True),
    Index("uq_customers_external", "account_id", "external_customer_id", unique=True),
    Index("uq_customers_onchain_key", "account_id", "onchain_key", unique=True),
    # customer lists, keyset-paged on seq
    Index("ix_customers_seq", "account_id", "seq"),
)

workflows = Table(
    "workflows",
    metadata,
    _seq(),
    _account(),
    Column("id", _ID, nullable=False),
    Column("name", _ID, nullable=False),
    Column("slug", _ID, nullable=False),
    Column("product_surface", String(32), nullable=False),
    Column("description", Text),
    Column("meta", _JSON),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", _TIME, nullable=False),
    Index("uq_workflows_id", "account_id", "id", unique=True),
    Index("uq_workflows_slug", "account_id", "slug", unique=True),
)

runs = Table(
    "runs",
    metadata,
    _seq(),
    _account(),
    Column("id", _ID, nullable=False),
    Column("customer_id", _ID, nullable=False),
    Column("workflow_id", _ID, nullable=False),
    Column("status", String(16), nullable=False),
    Column("external_run_id", _ID),
    Column("correlation_id", _ID),
    Column("parent_run_id", _ID),
    Column("meta", _JSON),
    Column("error_message", Text),
    Column("error_code", _ID),
    Column("started_at", _TIME, nullable=False),
    Column("ended_at", _TIME),
    Column("created_at", _TIME, nullable=False),
    # the public key (api_keys.seq) that started the run: only that key may end it; NULL when
    # a secret key started it (revision 0002)
    Column("started_by", Integer),
    Index("uq_runs_id", "account_id", "id", unique=True),
    Index("ix_runs_external", "account_id", "customer_id", "external_run_id"),
    # run lists, newest start first, keyset-paged on (started_at, seq): one index per filter
    Index("ix_runs_started", "account_id", "started_at", "seq"),
    Index("ix_runs_customer_started", "account_id", "customer_id", "started_at", "seq"),
    Index("ix_runs_workflow_started", "account_id", "workflow_id", "started_at", "seq"),
)

#: run events; ``meter`` is the event's meter, or its event type when it named none
events = Table(
    "events",
    metadata,
    _seq(),
    _account(),
    Column("id", _ID, nullable=False),
    Column("run_id", _ID, nullable=False),
    Column("customer_id", _ID, nullable=False),
    Column("event_type", _ID, nullable=False),
    Column("meter", _ID, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("units", _ID),
    Column("description", Text),
    Column("cost_units", Float),
    Column("cost_currency", String(16)),
    Column("correlation_id", _ID),
    Column("parent_event_id", _ID),
    Column("span_id", _ID),
    Column("idempotency_key", _ID),
    Column("meta", _JSON),
    Column("timestamp", _TIME, nullable=False),
    Column("duration_ms", Float),
    Column("outcome", _ID),
    Column("error_type", _ID),
    #: true when the event named no meter (``run.event()``): an event type, not a meter;
    #: NULL (false) for metered events, so the SDK's usual row does not carry it
    Column("event_only", Boolean),
    Index("uq_events_id", "account_id", "id", unique=True),
    Index(
        "uq_events_key",
        "account_id",
        "idempotency_key",
        unique=True,
        sqlite_where=_WITH_KEY,
        postgresql_where=_WITH_KEY,
    ),
    # a run's events in time order, keyset-paged on (timestamp, seq)
    Index("ix_events_run_time", "account_id", "run_id", "timestamp", "seq"),
    # the partial hours at the edges of a usage window (whole hours come from usage_rollups)
    Index("ix_events_time", "account_id", "timestamp"),
    Index("ix_events_customer_time", "account_id", "customer_id", "timestamp"),
)

#: ``family`` is "usage" (POST /usage/internal[/batch], ingest) or "charge" (POST /usage)
usage_records = Table(
    "usage_records",
    metadata,
    _seq(),
    _account(),
    Column("id", _ID, nullable=False),
    Column("family", String(16), nullable=False),
    Column("customer_id", _ID, nullable=False),
    Column("usage_type", _ID, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("units", _ID),
    Column("description", Text),
    Column("correlation_id", _ID),
    Column("idempotency_key", _ID),
    Column("meta", _JSON),
    Column("timestamp", _TIME, nullable=False),
    Column("charge_id", _ID),
    Column("amount_micros", BigInteger),  # charges: USDC in millionths
    Column("charge_status", String(32)),
    Index("uq_usage_id", "account_id", "id", unique=True),
    Index(
        "uq_usage_key",
        "account_id",
        "family",
        "idempotency_key",
        unique=True,
        sqlite_where=_WITH_KEY,
        postgresql_where=_WITH_KEY,
    ),
    Index("ix_usage_customer", "account_id", "customer_id"),
    Index("ix_usage_time", "account_id", "timestamp"),
    Index("ix_usage_customer_time", "account_id", "customer_id", "timestamp"),
)

# --------------------------------------------------------------------------------------------
# rollups (maintained in the write transaction that stores the rows they sum; see rollups.py)

#: an exact decimal: NUMERIC on PostgreSQL; text on SQLite (which has no decimal type), added
#: by the ``drip_dec_add`` function the SQLite connections register
DECIMAL = Numeric(asdecimal=True).with_variant(Text(), "sqlite")

#: usage per (account, customer, hour, meter, kind, workflow, model). ``customer_id`` is ``*``
#: on the account-wide rows (the same sums without the customer), so a whole-account summary
#: reads hundreds of rows, not one per customer; ``kind`` is ``meter`` or ``event`` (an event
#: type recorded without a meter); ``hour`` is ``YYYY-MM-DDTHH`` (UTC); an absent workflow or
#: model is ``''`` (a unique index needs values).
usage_rollups = Table(
    "usage_rollups",
    metadata,
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
    Column("quantity", DECIMAL, nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Index(
        "uq_usage_rollups",
        *("account_id", "customer_id", "hour", "meter", "kind", "workflow_id", "model"),
        unique=True,
    ),
)

#: per run and meter: event count and exact quantity, for run lists and run totals
run_meters = Table(
    "run_meters",
    metadata,
    _seq(),
    _account(),
    Column("run_id", _ID, nullable=False),
    Column("meter", _ID, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("quantity", DECIMAL, nullable=False),
    Column("cost_units", DECIMAL, nullable=False),
    Index("uq_run_meters", "account_id", "run_id", "meter", "kind", unique=True),
)
