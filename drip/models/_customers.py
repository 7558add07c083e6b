"""Customers, usage, charges, usage summaries and workflows."""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import (
    MAX_NAME_LENGTH,
    ChargeStatus,
    CustomerRef,
    CustomerStatus,
    DripModel,
    Metadata,
    Name,
    Quantity,
    StoredMetadata,
)

# --------------------------------------------------------------------------------------------
# customers


class CreateCustomerRequest(DripModel):
    external_customer_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    onchain_address: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    is_internal: bool | None = None
    metadata: Metadata | None = None
    #: extension: answer an existing customer with the same identity (200, ``isDuplicate``)
    #: instead of 409, so creating "user_123" twice is safe. The published client never sends it.
    return_existing: bool | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> CreateCustomerRequest:
        if not self.external_customer_id and not self.onchain_address:
            raise ValueError("at least one of external_customer_id or onchain_address is required")
        return self


class Customer(DripModel):
    id: str
    created_at: str
    updated_at: str
    business_id: str | None = None
    external_customer_id: str | None = None
    onchain_address: str | None = None
    is_internal: bool = False
    status: CustomerStatus | None = CustomerStatus.ACTIVE
    metadata: StoredMetadata | None = None
    #: true when ``create_customer`` answered an existing customer (see ``return_existing``)
    is_duplicate: bool = False


class CustomerList(DripModel):
    data: list[Customer]
    count: int
    #: extension: keyset paging (pass as ``cursor`` for the next page; None on the last)
    next_cursor: str | None = None
    has_more: bool = False


# --------------------------------------------------------------------------------------------
# usage and charges


class TrackUsageRequest(CustomerRef):
    usage_type: Name
    quantity: Quantity
    idempotency_key: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    units: str | None = None
    description: str | None = None
    metadata: Metadata | None = None
    #: extension: when the usage happened (ISO-8601); the server's clock otherwise
    timestamp: str | None = None


class TrackUsageResult(DripModel):
    success: bool
    usage_event_id: str
    customer_id: str
    usage_type: str
    quantity: float
    is_internal: bool
    message: str
    is_duplicate: bool = False


class TrackUsageBatchResult(DripModel):
    success: bool
    customer_id: str
    usage_type: str
    quantity: float
    idempotency_key: str
    pending_events: int
    message: str
    mode: str = "batch"


class ChargeRequest(CustomerRef):
    usage_type: Name
    quantity: Quantity
    idempotency_key: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    metadata: Metadata | None = None


class ChargeInfo(DripModel):
    id: str
    amount_usdc: str
    status: ChargeStatus
    amount_token: str | None = None
    tx_hash: str | None = None


class ChargeResult(DripModel):
    success: bool
    usage_event_id: str
    is_duplicate: bool
    charge: ChargeInfo


class MeterTotal(DripModel):
    """Totals of one meter: ``quantity`` sums every source; the counts say where it came from.

    ``kind`` is ``"meter"`` for metered usage and ``"event"`` for an event type recorded
    without a meter (``run.event("report.sent")``); ``quantity_decimal`` is the exact total.
    """

    meter: str
    quantity: float
    usage_records: int = 0
    charges: int = 0
    run_events: int = 0
    amount_usdc: str = "0.000000"
    kind: str = "meter"
    quantity_decimal: str | None = None


class UsageGroup(DripModel):
    """One group of a summary asked with ``group_by``: the grouped dimensions are set (an
    absent workflow or model is null), ``quantity`` is the exact decimal total as text."""

    kind: str
    quantity: str
    meter: str | None = None
    customer_id: str | None = None
    #: the customer's own id, when grouped by customer (null for one that has none)
    external_customer_id: str | None = None
    workflow_id: str | None = None
    model: str | None = None
    #: ``YYYY-MM-DD`` (UTC) when grouped by day
    day: str | None = None
    #: the hour's start, ``YYYY-MM-DDTHH:00:00Z``, when grouped by hour
    hour: str | None = None
    usage_records: int = 0
    charges: int = 0
    run_events: int = 0
    amount_usdc: str = "0.000000"


class UsageSummary(DripModel):
    """``GET /v1/usage/summary`` (extension): per-meter totals in ``[since, until)``, and
    ``groups`` when ``group_by`` was given."""

    customer_id: str | None = None
    meters: list[MeterTotal]
    since: str | None = None
    until: str | None = None
    group_by: list[str] = Field(default_factory=list)
    groups: list[UsageGroup] = Field(default_factory=list)

    def total(self, meter: str) -> float:
        """The total quantity of one meter (0 when it has none)."""
        return sum(m.quantity for m in self.meters if m.meter == meter)


# --------------------------------------------------------------------------------------------
# workflows


class CreateWorkflowRequest(DripModel):
    name: Name
    slug: Name
    product_surface: str | None = "CUSTOM"
    description: str | None = None
    metadata: Metadata | None = None


class Workflow(DripModel):
    id: str
    name: str
    slug: str
    product_surface: str
    is_active: bool
    created_at: str
    chain: str | None = None
    description: str | None = None


class WorkflowList(DripModel):
    data: list[Workflow]
    count: int
