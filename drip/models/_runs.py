"""Runs, run events, recorded runs, run details and timelines."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ._base import (
    MAX_NAME_LENGTH,
    CustomerRef,
    DripModel,
    Metadata,
    Name,
    Quantity,
    RunStatus,
    StoredMetadata,
)

# --------------------------------------------------------------------------------------------
# runs and events


class StartRunRequest(CustomerRef):
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
    #: extension: the customer's own id, when it has one
    external_customer_id: str | None = None
    workflow_id: str
    workflow_name: str
    status: RunStatus
    correlation_id: str | None
    created_at: str
    parent_run_id: str | None = None
    external_run_id: str | None = None
    is_duplicate: bool = False


class RunMeter(DripModel):
    """One meter's total in a run: event count and exact quantity (decimal text)."""

    meter: str
    kind: str
    events: int
    quantity: str


class RunSummary(RunResult):
    """A run in ``GET /v1/runs``: start, end, duration and its totals per meter."""

    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    event_count: int = 0
    meters: list[RunMeter] = Field(default_factory=list)


class RunList(DripModel):
    """``GET /v1/runs`` (extension): newest start first; ``next_cursor`` (None on the last
    page) asks for the next page."""

    data: list[RunSummary]
    count: int
    next_cursor: str | None = None
    has_more: bool = False


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
    #: extension: true when the run had already ended (the first end wins; ``status`` is the
    #: stored one, which this request did not change)
    is_duplicate: bool = False


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


class RecordRunRequest(CustomerRef):
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
    #: extension: the customer's own id (the same as ``customer_name``)
    external_customer_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    error_message: str | None = None
    error_code: str | None = None
    correlation_id: str | None = None
    metadata: StoredMetadata | None = None
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
    metadata: StoredMetadata | None = None


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
    #: extension: the customer's own id (the same as ``customer_name``)
    external_customer_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    error_message: str | None = None
    error_code: str | None = None
    correlation_id: str | None = None
    parent_run_id: str | None = None
    metadata: StoredMetadata | None = None
    #: extension: paging of the events (``cursor`` for the next page; None on the last)
    next_cursor: str | None = None
    has_more: bool = False
