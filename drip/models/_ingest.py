"""Batch ingestion (extension): ``POST /v1/ingest``, one request per flush of the SDK's worker."""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from itertools import repeat
from operator import and_
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

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

    ``packed`` may stand for ``seq``, ``t`` and ``d`` (sent only once the server's answer says
    ``packed``): base64 of ``3 n`` little-endian signed 64-bit integers, ``n`` sequence numbers
    (their low 40 bits), then ``n`` start times and ``n`` end times in ns (``t`` = start,
    ``d`` = end - start, each within the range ``t`` and ``d`` have). Either ``packed`` or all
    of ``seq``, ``t`` and ``d`` is given, never both.
    """

    type: Literal["events"] = "events"
    id_prefix: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH - 10)]
    runs: Annotated[list[IngestEventRun], Field(min_length=1)]
    meters: Annotated[list[IngestEventMeter], Field(min_length=1)]
    #: the wall-clock time (ns since the Unix epoch) the ``t`` offsets count from
    at: Annotated[int, Field(ge=0, le=4 * 10**18)]
    run: list[Annotated[int, Field(ge=0)]] | None = None
    meter: list[Annotated[int, Field(ge=0)]] | None = None
    seq: Annotated[list[Seq], Field(min_length=1)] | None = None
    parent: list[Seq | None] | None = None
    t: list[Nanos] | None = None
    d: list[Nanos] | None = None
    span: list[Annotated[int, Field(ge=0, lt=1 << 64)] | None] | None = None
    #: ``seq``, ``t`` and ``d`` packed (see above)
    packed: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> IngestEvents:
        given = (self.seq is not None, self.t is not None, self.d is not None)
        if self.packed is None and not all(given):
            raise ValueError("seq, t and d (or packed) are required")
        if self.packed is not None and any(given):
            raise ValueError("packed stands for seq, t and d: give one form")
        return self


#: the mask of a packed sequence number (an id holds 40 bits: 10 hex digits)
SEQ_MASK = (1 << 40) - 1
_SWAP = sys.byteorder != "little"


def pack_columns(seq: list[int], starts: list[int], ends: list[int]) -> str:
    """The ``packed`` text of ``IngestEvents``: three columns as int64 in one base64 string.

    One C-level pass per column (``array`` from a list, base64 of its bytes): about a quarter
    of the CPU of writing the same integers as JSON text."""
    values = array("q", seq)
    values.extend(array("q", starts))
    values.extend(array("q", ends))
    if _SWAP:
        values.byteswap()
    return binascii.b2a_base64(values.tobytes(), newline=False).decode("ascii")


def unpack_columns(text: str) -> tuple[list[int], list[int], list[int]]:
    """``pack_columns`` reversed: the sequence numbers (low 40 bits), start and end times.
    Raises ``ValueError`` for text that is not base64 of ``3 n`` int64 values, ``n >= 1``."""
    raw = base64.b64decode(text, validate=True)
    if not raw or len(raw) % 24:
        raise ValueError("not 3 n 64-bit integers")
    values = array("q")
    values.frombytes(raw)
    if _SWAP:
        values.byteswap()
    n = len(values) // 3
    seq = list(map(and_, values[:n], repeat(SEQ_MASK)))
    return seq, values[n : 2 * n].tolist(), values[2 * n :].tolist()


def packed_count(text: str) -> int:
    """How many events a ``packed`` text holds (from its length, without decoding it)."""
    size = len(text) // 4 * 3 - text[-2:].count("=")
    return max(1, size // 24)


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
    #: the server takes ``events`` items in their ``packed`` form too
    packed: bool | None = None


def read_ingest_result(data: object) -> IngestResult:
    """``IngestResult`` from the decoded JSON of an answer, checked here by hand, without
    building the models' schemas (they are built on first use).

    The delivery reads every answer this way: its first answer may come at exit, when
    building a schema can fail (pydantic loads its plugins then, and one may need a thread
    pool, closed by then) or hang (a ``fork()`` child inherits pydantic's build lock held by
    the parent's thread). A shape it does not expect is a ValueError naming the field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"the answer is not an object: {type(data).__name__}")
    counts: dict[str, Any] = {
        name: data.get(name) for name in ("created", "duplicates", "updated", "rejected")
    }
    for name, count in counts.items():
        if count.__class__ is not int:
            raise ValueError(f"{name!r} is not an integer: {count!r}")
    statuses = data.get("statuses")
    if statuses is not None and (not isinstance(statuses, str) or statuses.strip("cdur")):
        raise ValueError(f"'statuses' is not a string of c, d, u and r: {statuses!r}")
    flags: dict[str, Any] = {name: data.get(name) for name in ("columns", "packed")}
    for name, flag in flags.items():
        if flag is not None and flag.__class__ is not bool:
            raise ValueError(f"{name!r} is not a boolean: {flag!r}")
    results = data.get("results")
    if not isinstance(results, list):
        raise ValueError(f"'results' is not a list: {results!r}")
    return IngestResult.model_construct(
        results=[_item_result(item, i) for i, item in enumerate(results)],
        statuses=statuses, **counts, **flags,
    )  # fmt: skip


_ITEM_STATUSES = frozenset(("created", "duplicate", "updated", "rejected"))


def _item_result(item: object, i: int) -> IngestItemResult:
    if not isinstance(item, dict):
        raise ValueError(f"results[{i}] is not an object: {item!r}")
    index, status = item.get("index"), item.get("status")
    if index.__class__ is not int:
        raise ValueError(f"results[{i}].index is not an integer: {index!r}")
    if status not in _ITEM_STATUSES:
        raise ValueError(f"results[{i}].status is not one of {sorted(_ITEM_STATUSES)}: {status!r}")
    texts: dict[str, Any] = {name: item.get(name) for name in ("id", "code", "message")}
    for name, text in texts.items():
        if text is not None and not isinstance(text, str):
            raise ValueError(f"results[{i}].{name} is not a string: {text!r}")
    return IngestItemResult.model_construct(index=index, status=status, **texts)
