"""Batch ingestion (extension): ``POST /v1/ingest``, one request per flush of the SDK's worker."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ._base import (
    CustomerRef,
    DripModel,
    Metadata,
    Name,
    Quantity,
    RunStatus,
)

# --------------------------------------------------------------------------------------------
# batch ingestion (extension): ``POST /v1/ingest``, one request per flush of the SDK's worker


class IngestRunStart(CustomerRef):
    type: Literal["run.start"] = "run.start"
    id: Name
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


class IngestUsage(CustomerRef):
    type: Literal["usage"] = "usage"
    id: Name
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
