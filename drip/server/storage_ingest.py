"""``POST /v1/ingest``: the SDK worker's batch of run starts, events, usage and run ends.

Items are applied in order in one transaction, each judged on its own: ``created``,
``duplicate`` (its id is already stored, or came earlier in the batch), ``updated`` (a run end)
or ``rejected`` with a code — a bad item never fails the others.

Built for throughput (tens of thousands of items per second): the whole body is validated with
one ``model_validate_json`` call when it is clean (per-item validation only when it is not); the
runs, customers and workflows a batch refers to are read with one query each; rows go in with
one ``executemany`` of ``INSERT … ON CONFLICT DO NOTHING`` per table; duplicates against the
database are found after the fact, only when the insert count falls short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, Table, bindparam, func, select, update

from drip.models import (
    TERMINAL_RUN_STATUSES,
    DripModel,
    IngestEvent,
    IngestItem,
    IngestResult,
    IngestRunEnd,
    IngestRunStart,
    IngestUsage,
    RunStatus,
)

from . import clock
from .db import Database, bulk_insert_ignore, chunked, insert_many, json_text
from .errors import ApiError, describe_validation_error
from .schema import events, runs, usage_records, workflows
from .storage import existing_customers, resolve_workflow
from .storage_runs import known_runs
from .wire import decode

__all__ = ["MAX_ITEMS", "ingest", "parse_batch"]

#: most items in one request (413 beyond); the SDK sends 2,000
MAX_ITEMS = 20_000

Item = IngestRunStart | IngestEvent | IngestUsage | IngestRunEnd


class _Batch(DripModel):
    """The request validated in one pass (the fast path; see IngestRequest for the shape)."""

    items: list[IngestItem]


_ITEM: TypeAdapter[Item] = TypeAdapter(IngestItem)


@dataclass
class _Rejected:
    id: str | None
    code: str
    message: str


def _ident(item: Any) -> str | None:
    if isinstance(item, dict):
        for key in ("id", "runId", "run_id"):
            if isinstance(item.get(key), str):
                return str(item[key])
    return None


def parse_batch(raw: bytes) -> list[Item | _Rejected]:
    """Validate a request body: the items, or a rejection for each item that does not fit."""
    try:
        parsed: list[Item | _Rejected] = list(_Batch.model_validate_json(raw).items)
    except ValidationError:
        parsed = _parse_each(decode(raw))
    if len(parsed) > MAX_ITEMS:
        raise ApiError(413, "TOO_MANY_ITEMS", f"items: at most {MAX_ITEMS} items per request")
    return parsed


def _parse_each(data: Any) -> list[Item | _Rejected]:
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ApiError(422, "VALIDATION_ERROR", "items: must be a list of ingest items")
    out: list[Item | _Rejected] = []
    for i, item in enumerate(items):
        try:
            out.append(_ITEM.validate_python(item))
        except ValidationError as exc:
            message = describe_validation_error(exc, prefix=f"items[{i}]")
            out.append(_Rejected(_ident(item), "VALIDATION_ERROR", message))
    return out


def _workflow_ids(conn: Connection, account_id: int, refs: set[str]) -> dict[str, str]:
    """ref (id or slug) -> workflow id, for the refs that exist."""
    found: dict[str, str] = {}
    for part in chunked(sorted(refs)):
        for wid, slug in conn.execute(
            select(workflows.c.id, workflows.c.slug).where(
                workflows.c.account_id == account_id,
                workflows.c.id.in_(part) | workflows.c.slug.in_(part),
            )
        ):
            found[wid] = found[slug] = wid
    return found


EVENT_COLUMNS = (
    "account_id", "id", "run_id", "customer_id", "event_type", "meter", "quantity", "units",
    "description", "correlation_id", "parent_event_id", "span_id", "meta", "timestamp",
    "duration_ms", "outcome", "error_type",
)  # fmt: skip
USAGE_COLUMNS = (
    "account_id", "id", "family", "customer_id", "usage_type", "quantity", "units",
    "description", "correlation_id", "meta", "timestamp",
)  # fmt: skip


def _insert(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    account_id: int,
    rows: list[tuple[Any, ...]],
) -> set[str] | None:
    """Insert rows; None when all went in, else the ids that did (the rest were duplicates)."""
    if not rows:
        return None
    before = conn.execute(select(func.max(table.c.seq))).scalar() or 0
    if insert_many(conn, table, columns, rows) == len(rows):
        return None
    return set(
        conn.execute(
            select(table.c.id).where(table.c.account_id == account_id, table.c.seq > before)
        ).scalars()
    )


class _Apply:
    """The in-order pass over one batch: decides each item, collects the rows to write.

    Results are plain dicts (validated into IngestResult once at the end); rows are tuples in
    the column order of the bulk insert. Both keep the per-item work small: this loop runs
    for every event the SDK sends.
    """

    def __init__(self, conn: Connection, account_id: int, items: Sequence[Item | _Rejected]):
        self.conn = conn
        self.account_id = account_id
        self.now = clock.now_iso()
        self.results: list[dict[str, Any]] = []
        self.run_rows: list[dict[str, Any]] = []
        self.event_rows: list[tuple[Any, ...]] = []
        self.event_at: list[int] = []  # result index of each event row
        self.usage_rows: list[tuple[Any, ...]] = []
        self.usage_at: list[int] = []
        self.ends: dict[str, dict[str, Any]] = {}
        run_refs: set[str] = set()
        customer_refs: set[str] = set()
        workflow_refs: set[str] = set()
        for item in items:
            if isinstance(item, IngestEvent | IngestRunEnd):
                run_refs.add(item.run_id)
            elif isinstance(item, IngestRunStart):
                run_refs.add(item.id)
                customer_refs.add(item.customer_id)
                workflow_refs.add(item.workflow)
            elif isinstance(item, IngestUsage):
                customer_refs.add(item.customer_id)
        self.runs = known_runs(conn, account_id, run_refs)
        self.customers = existing_customers(conn, account_id, customer_refs)
        self.workflows = _workflow_ids(conn, account_id, workflow_refs)
        self.seen_events: set[str] = set()
        self.seen_usage: set[str] = set()

    def result(
        self, ident: str | None, status: str, code: str | None = None, msg: str | None = None
    ) -> None:
        self.results.append(
            {
                "index": len(self.results),
                "id": ident,
                "status": status,
                "code": code,
                "message": msg,
            }
        )

    def reject_missing(self, ident: str | None, kind: str, ref: str) -> None:
        message = f"no {kind} with id {ref!r} in this account"
        self.result(ident, "rejected", f"{kind.upper()}_NOT_FOUND", message)

    def time(self, value: str | None, ident: str | None) -> str | None:
        if value is not None and clock.is_canonical(value):
            return value
        try:
            return clock.normalize(value, self.now)
        except ValueError as exc:
            self.result(ident, "rejected", "INVALID_TIMESTAMP", str(exc))
            return None

    def run_start(self, it: IngestRunStart) -> None:
        if it.id in self.runs:
            return self.result(it.id, "duplicate")
        if it.customer_id not in self.customers:
            return self.reject_missing(it.id, "customer", it.customer_id)
        started = self.time(it.started_at, it.id)
        if started is None:
            return None
        workflow_id = self.workflows.get(it.workflow)
        if workflow_id is None:
            try:
                row = resolve_workflow(self.conn, self.account_id, it.workflow, "workflow")
            except ApiError as exc:
                return self.result(it.id, "rejected", exc.code, exc.message)
            workflow_id = self.workflows[it.workflow] = row.id
        self.runs[it.id] = [it.customer_id, RunStatus.RUNNING.value]
        self.run_rows.append(
            {
                "account_id": self.account_id,
                "id": it.id,
                "customer_id": it.customer_id,
                "workflow_id": workflow_id,
                "status": RunStatus.RUNNING.value,
                "external_run_id": it.external_run_id,
                "correlation_id": it.correlation_id,
                "parent_run_id": it.parent_run_id,
                "meta": it.metadata,
                "started_at": started,
                "created_at": self.now,
            }
        )
        return self.result(it.id, "created")

    def event(self, it: IngestEvent) -> None:
        run = self.runs.get(it.run_id)
        eid = it.id
        if run is None:
            return self.reject_missing(eid, "run", it.run_id)
        if eid in self.seen_events:
            return self.result(eid, "duplicate")
        ts = it.timestamp
        if ts is None or not clock.is_canonical(ts):
            ts = self.time(ts, eid)
            if ts is None:
                return None
        self.seen_events.add(eid)
        index = len(self.results)
        self.event_at.append(index)
        meta = it.metadata
        self.event_rows.append(
            (
                self.account_id, eid, it.run_id, run[0], it.event_type,
                it.meter or it.event_type, 1.0 if it.quantity is None else it.quantity,
                it.units, it.description, it.correlation_id, it.parent_event_id, it.span_id,
                None if meta is None else json_text(meta), ts, it.duration_ms, it.outcome,
                it.error_type,
            )
        )  # fmt: skip
        self.results.append({"index": index, "id": eid, "status": "created"})
        return None

    def usage(self, it: IngestUsage) -> None:
        if it.customer_id not in self.customers:
            return self.reject_missing(it.id, "customer", it.customer_id)
        if it.id in self.seen_usage:
            return self.result(it.id, "duplicate")
        ts = self.time(it.timestamp, it.id)
        if ts is None:
            return None
        self.seen_usage.add(it.id)
        self.usage_at.append(len(self.results))
        self.usage_rows.append(
            (
                self.account_id, it.id, "usage", it.customer_id, it.usage_type, it.quantity,
                it.units, it.description, it.correlation_id, json_text(it.metadata), ts,
            )
        )  # fmt: skip
        return self.result(it.id, "created")

    def run_end(self, it: IngestRunEnd) -> None:
        run = self.runs.get(it.run_id)
        if run is None:
            return self.reject_missing(it.run_id, "run", it.run_id)
        if it.status not in TERMINAL_RUN_STATUSES:
            message = f"a run cannot end {it.status.value}"
            return self.result(it.run_id, "rejected", "INVALID_STATUS", message)
        if run[1] == it.status.value:
            return self.result(it.run_id, "duplicate")
        ended = self.time(it.ended_at, it.run_id)
        if ended is None:
            return None
        run[1] = it.status.value
        self.ends[it.run_id] = {
            "b_id": it.run_id,
            "b_status": it.status.value,
            "b_ended": ended,
            "b_message": it.error_message,
            "b_code": it.error_code,
            "b_meta": it.metadata,
        }
        return self.result(it.run_id, "updated")

    def write(self) -> None:
        """Write what the pass decided: runs, then events and usage, then run ends."""
        bulk_insert_ignore(self.conn, runs, self.run_rows)
        for table, columns, rows, at in (
            (events, EVENT_COLUMNS, self.event_rows, self.event_at),
            (usage_records, USAGE_COLUMNS, self.usage_rows, self.usage_at),
        ):
            went_in = _insert(self.conn, table, columns, self.account_id, rows)
            if went_in is not None:
                for row, index in zip(rows, at, strict=True):
                    if row[1] not in went_in:
                        self.results[index]["status"] = "duplicate"
        if self.ends:
            self._end_runs()

    def _end_runs(self) -> None:
        with_meta = [e for e in self.ends.values() if e["b_meta"]]
        current = {
            rid: meta
            for part in chunked([e["b_id"] for e in with_meta])
            for rid, meta in self.conn.execute(
                select(runs.c.id, runs.c.meta).where(
                    runs.c.account_id == self.account_id, runs.c.id.in_(part)
                )
            )
        }
        for end in with_meta:
            end["b_meta"] = {**(current.get(end["b_id"]) or {}), **end["b_meta"]}
        values: dict[str, Any] = {
            "status": bindparam("b_status"),
            "ended_at": bindparam("b_ended"),
            "error_message": bindparam("b_message"),
            "error_code": bindparam("b_code"),
        }
        where = (runs.c.account_id == self.account_id, runs.c.id == bindparam("b_id"))
        plain = [e for e in self.ends.values() if not e["b_meta"]]
        if plain:
            self.conn.execute(update(runs).where(*where).values(values), plain)
        if with_meta:
            values["meta"] = bindparam("b_meta")
            self.conn.execute(update(runs).where(*where).values(values), with_meta)


def ingest(db: Database, account_id: int, raw: bytes) -> IngestResult:
    """Validate and apply one ingest request body."""
    items = parse_batch(raw)
    with db.write() as conn:
        batch = _Apply(conn, account_id, items)
        for item in items:
            if isinstance(item, IngestEvent):
                batch.event(item)
            elif isinstance(item, IngestRunStart):
                batch.run_start(item)
            elif isinstance(item, IngestUsage):
                batch.usage(item)
            elif isinstance(item, IngestRunEnd):
                batch.run_end(item)
            else:
                batch.result(item.id, "rejected", item.code, item.message)
        batch.write()
    counts = {"created": 0, "duplicate": 0, "updated": 0, "rejected": 0}
    for r in batch.results:
        counts[r["status"]] += 1
    return IngestResult.model_validate(
        {
            "results": batch.results,
            "created": counts["created"],
            "duplicates": counts["duplicate"],
            "updated": counts["updated"],
            "rejected": counts["rejected"],
        }
    )
