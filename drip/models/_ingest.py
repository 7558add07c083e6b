"""Batch ingestion (extension): ``POST /v1/ingest``, one request per flush of the SDK's worker."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from drip._checks import MAX_NAME_LENGTH

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


class IngestEventRun(DripModel):
    """What the events of an ``events`` item share with their run."""

    run_id: Name
    correlation_id: str | None = None


class IngestEventMeter(DripModel):
    """What the events of an ``events`` item share with their meter (a ``@metered`` decorator)."""

    event_type: Name
    meter: str | None = None
    quantity: Quantity | None = None
    units: str | None = None
    metadata: Metadata | None = None


#: a sequence number or parent sequence number (40 bits: ``idPrefix`` + 10 hex digits)
Seq = Annotated[int, Field(ge=0, lt=1 << 40)]
#: nanoseconds: an offset from ``at``, or a duration
Nanos = Annotated[int, Field(ge=0, le=10**18)]


class IngestEvents(DripModel):
    """Many metered events of the usual shape in columns (what the SDK sends for the metered
    calls of a flush once the server's answer says ``columns``).

    Event ``i`` is the ``event`` item ``{"id": idPrefix + 10 hex digits of seq[i],
    **runs[run[i]], **meters[meter[i]], "parentEventId": idPrefix + hex of parent[i] (when not
    null), "spanId": 16 hex digits of span[i] (when not null), "timestamp": at + t[i] ns (UTC,
    to the microsecond), "durationMs": d[i] ns rounded to the microsecond, "outcome": "ok"}``.
    ``run`` and ``meter`` may be left out when ``runs`` / ``meters`` hold one entry; ``parent``
    and ``span`` when every value is null. Every column has one value per event; the answer has
    one result per event, in order. An item that breaks a rule is rejected as a whole (a result
    per event), the batch's other items are not.
    """

    type: Literal["events"] = "events"
    id_prefix: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH - 10)]
    runs: Annotated[list[IngestEventRun], Field(min_length=1)]
    meters: Annotated[list[IngestEventMeter], Field(min_length=1)]
    #: the wall-clock time (ns since the Unix epoch) the ``t`` offsets count from
    at: Annotated[int, Field(ge=0, le=4 * 10**18)]
    run: list[Annotated[int, Field(ge=0)]] | None = None
    meter: list[Annotated[int, Field(ge=0)]] | None = None
    seq: Annotated[list[Seq], Field(min_length=1)]
    parent: list[Seq | None] | None = None
    t: list[Nanos]
    d: list[Nanos]
    span: list[Annotated[int, Field(ge=0, lt=1 << 64)] | None] | None = None


class IngestRequest(DripModel):
    """Items are applied in order; a run start may precede its events in the same batch."""

    items: list[
        Annotated[
            IngestRunStart | IngestEvent | IngestUsage | IngestRunEnd | IngestEvents,
            Field(discriminator="type"),
        ]
    ]


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
    #: the server takes ``events`` items (``IngestEvents``): the SDK sends them after this answer
    columns: bool | None = None
