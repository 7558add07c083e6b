"""The one schema source: every request and response body of the Drip API.

The client builds requests and parses responses with these models and the local server
(``drip.server``) validates requests and renders responses with the same ones, so the two cannot
drift. Attributes are snake_case; the wire is camelCase (``customer_id`` <-> ``customerId``).
Unknown keys are ignored in both directions, as the published 0.1.2 client expects.

Response models are rendered by the server with every key present (``None`` as ``null``): the
published client demands some keys even when their value is null (contract §2.3 item 5).
"""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "ChargeInfo",
    "ChargeRequest",
    "ChargeResult",
    "ChargeStatus",
    "CreateCustomerRequest",
    "CreateWorkflowRequest",
    "Customer",
    "CustomerList",
    "CustomerStatus",
    "DripModel",
    "EmitEventRequest",
    "EmitEventsBatchRequest",
    "EmitEventsBatchResult",
    "EndRunRequest",
    "EndRunResult",
    "EventResult",
    "Health",
    "IngestEvent",
    "IngestItem",
    "IngestItemResult",
    "IngestRequest",
    "IngestResult",
    "IngestRunEnd",
    "IngestRunStart",
    "IngestUsage",
    "MeterTotal",
    "PingResult",
    "RecordRunEvent",
    "RecordRunRequest",
    "RecordRunResult",
    "RunDetails",
    "RunLinks",
    "RunList",
    "RunResult",
    "RunStatus",
    "RunTimeline",
    "RunTotals",
    "StartRunRequest",
    "TimelineEvent",
    "TimelineSummary",
    "TrackUsageBatchResult",
    "TrackUsageRequest",
    "TrackUsageResult",
    "UsageSummary",
    "Workflow",
    "WorkflowList",
]

#: Largest metadata object accepted, as compact JSON bytes (client and server agree on it).
MAX_METADATA_BYTES = 16 * 1024
#: Longest identifier-like string (ids, keys, meters, event types).
MAX_NAME_LENGTH = 256


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a bool")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


#: A usage quantity: a finite number. bool is refused (``True`` is not a quantity).
Quantity = Annotated[float, BeforeValidator(_not_bool), AfterValidator(_finite)]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_non_empty)]
Metadata = dict[str, Any]


class DripModel(BaseModel):
    """Base of every wire model: camelCase aliases, snake_case attributes, extra keys ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
        # schemas are built on first use, not at import: `import drip` stays cheap
        defer_build=True,
    )

    def to_wire(self, *, drop_none: bool = True) -> dict[str, Any]:
        """The JSON-ready body (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=drop_none)


class RunStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"


TERMINAL_RUN_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMEOUT}
)


class ChargeStatus(str, enum.Enum):
    PENDING_SETTLEMENT = "PENDING_SETTLEMENT"
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"
    ADJUSTED = "ADJUSTED"


class CustomerStatus(str, enum.Enum):
    ACTIVE = "ACTIVE"
    LOW_BALANCE = "LOW_BALANCE"
    PAUSED = "PAUSED"


# --------------------------------------------------------------------------------------------
# health


class Health(DripModel):
    """``GET /health``: ``timestamp`` is Unix seconds."""

    status: str
    timestamp: int


class PingResult(DripModel):
    """What ``ping()`` returns."""

    ok: bool
    status: str
    latency_ms: int
    timestamp: int | None = None


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
    metadata: Metadata | None = None
    #: true when ``create_customer`` answered an existing customer (see ``return_existing``)
    is_duplicate: bool = False


class CustomerList(DripModel):
    data: list[Customer]
    count: int


# --------------------------------------------------------------------------------------------
# usage and charges


class TrackUsageRequest(DripModel):
    customer_id: Name
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


class ChargeRequest(DripModel):
    customer_id: Name
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
    """Totals of one meter: ``quantity`` sums every source; the counts say where it came from."""

    meter: str
    quantity: float
    usage_records: int = 0
    charges: int = 0
    run_events: int = 0
    amount_usdc: str = "0.000000"


class UsageSummary(DripModel):
    """``GET /v1/usage/summary`` (extension)."""

    customer_id: str | None = None
    meters: list[MeterTotal]

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


# --------------------------------------------------------------------------------------------
# runs and events


class StartRunRequest(DripModel):
    customer_id: Name
    #: a workflow id or slug (an unknown slug creates the workflow)
    workflow_id: Name
    external_run_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    correlation_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    parent_run_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    metadata: Metadata | None = None
    #: extension: a client-generated run id; a repeat is a duplicate, not an error
    id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    #: extension: when the run started (ISO-8601)
    started_at: str | None = None


class RunResult(DripModel):
    id: str
    customer_id: str
    workflow_id: str
    workflow_name: str
    status: RunStatus
    correlation_id: str | None
    created_at: str
    parent_run_id: str | None = None
    external_run_id: str | None = None
    is_duplicate: bool = False


class RunList(DripModel):
    """``GET /v1/runs`` (extension): newest first."""

    data: list[RunResult]
    count: int


class EndRunRequest(DripModel):
    status: RunStatus
    error_message: str | None = None
    error_code: str | None = None
    metadata: Metadata | None = None
    #: extension: when the run ended (ISO-8601)
    ended_at: str | None = None


class EndRunResult(DripModel):
    id: str
    status: RunStatus
    ended_at: str
    duration_ms: int | None
    event_count: int
    total_cost_units: str | None


class EmitEventRequest(DripModel):
    run_id: Name
    event_type: Name
    quantity: Quantity | None = None
    units: str | None = None
    description: str | None = None
    cost_units: Quantity | None = None
    cost_currency: str | None = None
    correlation_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    parent_event_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    span_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    idempotency_key: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    metadata: Metadata | None = None
    #: extensions: client-generated id, start time, duration, outcome, meter
    id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    timestamp: str | None = None
    duration_ms: float | None = None
    outcome: str | None = None
    error_type: str | None = None
    meter: str | None = None


class EventResult(DripModel):
    id: str
    run_id: str
    event_type: str
    quantity: float
    cost_units: float | None
    is_duplicate: bool
    timestamp: str


class EmitEventsBatchRequest(DripModel):
    events: list[EmitEventRequest]


class BatchEventResult(DripModel):
    id: str
    event_type: str
    is_duplicate: bool = False
    skipped: bool = False
    reason: str | None = None


class EmitEventsBatchResult(DripModel):
    success: bool
    created: int
    duplicates: int
    skipped: int = 0
    events: list[BatchEventResult]


class RecordRunEvent(DripModel):
    event_type: str = ""
    #: missing means 1, as in the published client's fallback path
    quantity: Quantity | None = None
    units: str | None = None
    description: str | None = None
    metadata: Metadata | None = None
    cost_units: Quantity | None = None


class RecordRunRequest(DripModel):
    customer_id: Name
    workflow: Name
    events: list[RecordRunEvent] = Field(default_factory=list)
    status: RunStatus = RunStatus.COMPLETED
    error_message: str | None = None
    error_code: str | None = None
    external_run_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    correlation_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    metadata: Metadata | None = None
    #: extension: a client-generated run id; a repeat answers the first result (no new events)
    id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)


class RecordRunSummaryRun(DripModel):
    id: str
    workflow_id: str
    workflow_name: str
    status: RunStatus
    duration_ms: int | None


class RecordRunEventCounts(DripModel):
    created: int
    duplicates: int


class RecordRunResult(DripModel):
    run: RecordRunSummaryRun
    events: RecordRunEventCounts
    total_cost_units: str | None
    summary: str


class RunTotals(DripModel):
    event_count: int
    total_quantity: str
    total_cost_units: str


class RunLinks(DripModel):
    timeline: str


class RunDetails(DripModel):
    id: str
    customer_id: str
    workflow_id: str
    workflow_name: str
    status: RunStatus
    totals: RunTotals
    links: RunLinks = Field(alias="_links")
    customer_name: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    error_message: str | None = None
    error_code: str | None = None
    correlation_id: str | None = None
    metadata: Metadata | None = None
    parent_run_id: str | None = None
    external_run_id: str | None = None


class TimelineEvent(DripModel):
    id: str
    event_type: str
    timestamp: str
    quantity: float = 0
    units: str | None = None
    description: str | None = None
    cost_units: float | None = None
    cost_usdc: str | None = None
    correlation_id: str | None = None
    parent_event_id: str | None = None
    span_id: str | None = None
    duration_ms: float | None = None
    outcome: str | None = None
    error_type: str | None = None
    meter: str | None = None
    charge: dict[str, Any] | None = None
    #: carries ``quantity`` and ``units`` too, for the published client
    metadata: Metadata | None = None


class TimelineSummary(DripModel):
    total_events: int
    total_quantity: str
    total_cost_units: str
    total_charged_usdc: str


class RunTimeline(DripModel):
    """``GET /runs/{id}/timeline``: the run's fields flat at the top, then its events."""

    run_id: str
    customer_id: str
    workflow_id: str
    workflow_name: str
    status: RunStatus
    events: list[TimelineEvent]
    summary: TimelineSummary
    customer_name: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    error_message: str | None = None
    error_code: str | None = None
    correlation_id: str | None = None
    parent_run_id: str | None = None
    metadata: Metadata | None = None


# --------------------------------------------------------------------------------------------
# batch ingestion (extension): ``POST /v1/ingest``, one request per flush of the SDK's worker


class IngestRunStart(DripModel):
    type: Literal["run.start"] = "run.start"
    id: Name
    customer_id: Name
    #: workflow id or slug; an unknown slug creates the workflow
    workflow: Name
    parent_run_id: str | None = None
    external_run_id: str | None = None
    correlation_id: str | None = None
    metadata: Metadata | None = None
    started_at: str | None = None


class IngestEvent(DripModel):
    type: Literal["event"] = "event"
    id: Name
    run_id: Name
    event_type: Name
    meter: str | None = None
    quantity: Quantity | None = None
    units: str | None = None
    description: str | None = None
    parent_event_id: str | None = None
    correlation_id: str | None = None
    span_id: str | None = None
    timestamp: str | None = None
    duration_ms: float | None = None
    outcome: str | None = None
    error_type: str | None = None
    metadata: Metadata | None = None


class IngestUsage(DripModel):
    type: Literal["usage"] = "usage"
    id: Name
    customer_id: Name
    usage_type: Name
    quantity: Quantity
    units: str | None = None
    description: str | None = None
    correlation_id: str | None = None
    timestamp: str | None = None
    metadata: Metadata | None = None


class IngestRunEnd(DripModel):
    type: Literal["run.end"] = "run.end"
    #: the run's id (the item has no id of its own: a run ends once)
    run_id: Name
    status: RunStatus
    error_message: str | None = None
    error_code: str | None = None
    ended_at: str | None = None
    metadata: Metadata | None = None


IngestItem = Annotated[
    IngestRunStart | IngestEvent | IngestUsage | IngestRunEnd, Field(discriminator="type")
]


class IngestRequest(DripModel):
    """Items are applied in order; a run start may precede its events in the same batch."""

    items: list[dict[str, Any]]


class IngestItemResult(DripModel):
    index: int
    #: the item's id (the run id for ``run.end``), or None when the item had none
    id: str | None
    #: ``created`` | ``duplicate`` | ``updated`` | ``rejected``
    status: Literal["created", "duplicate", "updated", "rejected"]
    code: str | None = None
    message: str | None = None


class IngestResult(DripModel):
    results: list[IngestItemResult]
    #: ``?results=compact``: a letter per item (created, duplicate, updated, rejected: c/d/u/r)
    #: and ``results`` holds only the rejected items
    statuses: str | None = None
    created: int
    duplicates: int
    updated: int
    rejected: int
