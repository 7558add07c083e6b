"""``POST /v1/ingest``: the SDK worker's batch of run starts, events, usage and run ends.

Items are applied in order in one transaction, each judged on its own: ``created``,
``duplicate`` (its id is already stored, or came earlier in the batch; a run end for a run that
has already ended: the first end wins, and one with another status has code RUN_ALREADY_ENDED
naming the stored status), ``updated`` (a run end)
or ``rejected`` with a code — a bad item never fails the others. The answer is sent only after
the transaction commits.

Built for throughput (tens of thousands of items per second): the body is validated in one pass
into plain dicts (``ingest_parse``); the runs, customers and workflows a batch refers to are read
with one query; an event of the SDK's usual shape becomes a short row (no NULL columns); rows go
in with multi-row ``INSERT … ON CONFLICT DO NOTHING`` statements (``bulk.insert_new``);
duplicates against the database are found by the insert itself (see ``bulk``), never by a
first look-up per row. The answer is an ``Outcome`` (ids and statuses in parallel lists); ``routes.ingest``
writes it as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import compress, groupby, repeat
from operator import itemgetter, ne
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    Connection,
    bindparam,
    literal_column,
    null,
    select,
    union_all,
    update,
)

from drip.models import ONE_CUSTOMER, TERMINAL_RUN_STATUSES, RunStatus

from .. import clock
from ..errors import ApiError, missing_text
from ..ingest_parse import MAX_ITEMS, Item, Rejected, parse_batch
from .bulk import IN_CHUNK, bulk_insert_new, chunked, insert_new, json_text, query_rows
from .customers import AUTO_CREATE_OFF, external_customers
from .database import Database
from .refs import existing_customers, known_runs, not_owned, workflow_ids
from .rollups import Rollup, model_of
from .schema import customers, events, runs, usage_records, workflows
from .workflows import resolve_workflow

__all__ = ["MAX_ITEMS", "Outcome", "ingest", "parse_batch"]

_RUNNING = RunStatus.RUNNING.value
_ENDED = frozenset(s.value for s in TERMINAL_RUN_STATUSES)


def _ended(run_id: str, stored: str) -> str:
    return f"run {run_id} already ended {stored}: the first end wins, this one changed nothing"


_is_canonical = clock.is_canonical
_MAX_DURATION, _clamp_duration = clock.MAX_DURATION_MS, clock.clamp_duration


#: the SDK's usual event (a metered call that went well), as the fast schema gives it
_COMMON = (
    "type", "id", "run_id", "event_type", "meter", "quantity", "timestamp", "duration_ms",
    "outcome",
)  # fmt: skip
#: the row of such an event: never a NULL to leave out, except an explicit null
COMMON_COLUMNS = (
    "account_id", "id", "run_id", "customer_id", "event_type", "meter", "quantity",
    "timestamp", "duration_ms", "outcome",
)  # fmt: skip
_NO_DETAILS = (None,) * 6
_TYPE = itemgetter("type")
#: a COMMON_COLUMNS row's (run_id, customer_id, meter)
_RUN_CUSTOMER_METER = itemgetter(2, 3, 5)


def _full_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A ``COMMON_COLUMNS`` row as an ``EVENT_COLUMNS`` one."""
    if len(row) == len(EVENT_COLUMNS):
        return row
    return (*row[:7], *_NO_DETAILS, *row[7:], None, None)


def _padded(refs: set[str]) -> list[str]:
    """``refs`` sorted, the last repeated up to a power of two (an IN list of few lengths)."""
    ordered = sorted(refs)
    if ordered:
        ordered += ordered[-1:] * ((1 << (len(ordered) - 1).bit_length()) - len(ordered))
    return ordered


def _references(
    conn: Connection,
    account_id: int,
    run_refs: set[str],
    customer_refs: set[str],
    workflow_refs: set[str],
) -> tuple[dict[str, list[Any]], set[str], dict[str, str], dict[str, str]]:
    """The runs (id -> [customer, status, started_by]), customers and workflows (ref -> id) a batch refers
    to that exist, and the runs' workflows (run id -> workflow id, for the rollups): one ``UNION
    ALL`` query for a usual batch, one query each for a huge one (the rollups then read the
    runs' workflows themselves)."""
    if max(len(run_refs), len(customer_refs), len(workflow_refs)) > IN_CHUNK:
        return (
            known_runs(conn, account_id, run_refs),
            existing_customers(conn, account_id, customer_refs),
            workflow_ids(conn, account_id, workflow_refs),
            {},
        )
    # each list padded to a power of two (its last ref repeated): few shapes to compile
    run_list, customer_list, workflow_list = (
        _padded(r) for r in (run_refs, customer_refs, workflow_refs)
    )
    values: dict[str, Any] = {"account": account_id}
    for prefix, refs in (("r", run_list), ("c", customer_list), ("w", workflow_list)):
        values.update((f"{prefix}{i}", ref) for i, ref in enumerate(refs))

    def build() -> Any:
        account: BindParameter[int] = bindparam("account")

        def params(prefix: str, refs: list[str]) -> list[Any]:
            return [bindparam(f"{prefix}{i}") for i in range(len(refs))]

        parts = []
        if run_list:
            parts.append(
                select(
                    literal_column("'r'"),
                    runs.c.id,
                    runs.c.customer_id,
                    runs.c.status,
                    runs.c.started_by,
                    runs.c.workflow_id,
                ).where(runs.c.account_id == account, runs.c.id.in_(params("r", run_list)))
            )
        if customer_list:
            parts.append(
                select(literal_column("'c'"), customers.c.id, null(), null(), null(), null()).where(
                    customers.c.account_id == account,
                    customers.c.id.in_(params("c", customer_list)),
                )
            )
        if workflow_list:
            refs = params("w", workflow_list)
            parts.append(
                select(
                    literal_column("'w'"), workflows.c.id, workflows.c.slug, null(), null(), null()
                ).where(
                    workflows.c.account_id == account,
                    workflows.c.id.in_(refs) | workflows.c.slug.in_(refs),
                )
            )
        return parts[0] if len(parts) == 1 else union_all(*parts)

    found_runs: dict[str, list[Any]] = {}
    found_customers: set[str] = set()
    found_workflows: dict[str, str] = {}
    run_workflows: dict[str, str] = {}
    if values.keys() != {"account"}:
        shape = ("ingest.references", len(run_list), len(customer_list), len(workflow_list))
        for kind, ident, other, status, started_by, workflow in query_rows(
            conn, shape, build, values
        ):
            if kind == "r":
                found_runs[ident] = [other, status, started_by]
                run_workflows[ident] = workflow
            elif kind == "c":
                found_customers.add(ident)
            else:
                found_workflows[ident] = found_workflows[other] = ident
    return found_runs, found_customers, found_workflows, run_workflows


EVENT_COLUMNS = (
    "account_id", "id", "run_id", "customer_id", "event_type", "meter", "quantity", "units",
    "description", "correlation_id", "parent_event_id", "span_id", "meta", "timestamp",
    "duration_ms", "outcome", "error_type", "event_only",
)  # fmt: skip
USAGE_COLUMNS = (
    "account_id", "id", "family", "customer_id", "usage_type", "quantity", "units",
    "description", "correlation_id", "meta", "timestamp",
)  # fmt: skip


class _Apply:
    """The in-order pass over one batch: decides each item, collects the rows to write.

    Each item's answer is an id and a status in two parallel lists (plus a code and message for
    the few that have one); rows are tuples in the column order of the bulk insert. Both keep
    the per-item work small: this loop runs for every event the SDK sends.
    """

    def __init__(
        self,
        conn: Connection,
        account_id: int,
        items: Sequence[Item | Rejected],
        owner: int | None,
        create_customers: bool = True,
    ):
        self.conn = conn
        self.account_id = account_id
        self.owner = owner  # a public key's id: it may end only the runs it started
        self.now = clock.now_iso()
        self.ids: list[str | None] = []
        self.statuses: list[str] = []
        self.problems: dict[int, tuple[str, str]] = {}
        self.run_rows: list[dict[str, Any]] = []
        self.run_at: list[int] = []  # answer index of each run row
        self.event_rows: list[tuple[Any, ...]] = []
        self.full_rows = False  # some event rows are full ones (the rest are made full too)
        self.event_at: list[int] = []  # answer index of each event row
        self.usage_rows: list[tuple[Any, ...]] = []
        self.usage_at: list[int] = []
        self.ends: dict[str, dict[str, Any]] = {}
        self.end_at: dict[str, int] = {}  # run id -> the index of its end's answer
        # map() and filter() over C callables: no Python step per item (events are nearly all)
        valid: list[Item] = list(filter(dict.__instancecheck__, items))  # type: ignore[arg-type]
        run_refs: set[str] = set(map(dict.get, valid, repeat("run_id")))  # type: ignore[arg-type]
        run_refs.discard(None)
        customer_refs: set[str] = set()
        external_refs: set[str] = set()
        workflow_refs: set[str] = set()
        for item in compress(valid, map(ne, map(_TYPE, valid), repeat("event"))):
            kind = item["type"]
            if kind == "run.start":
                run_refs.add(item["id"])
                workflow_refs.add(item["workflow"])
            if kind in ("run.start", "usage"):
                # the fast parse leaves absent keys out, the model parse sets them to None
                if item.get("external_customer_id") is not None:
                    external_refs.add(item["external_customer_id"])
                elif item.get("customer_id") is not None:
                    customer_refs.add(item["customer_id"])
        self.runs, self.customers, self.workflows, self.run_workflows = _references(
            conn, account_id, run_refs, customer_refs, workflow_refs
        )
        #: external id -> customer id (found, or created on first use when allowed)
        self.externals = (
            external_customers(conn, account_id, external_refs, create_customers)
            if external_refs
            else {}
        )
        self.customers.update(self.externals.values())
        self.seen_events: set[str] = set()
        self.seen_usage: set[str] = set()
        self.rollup = Rollup()

    def result(
        self, ident: str | None, status: str, code: str | None = None, msg: str | None = None
    ) -> None:
        if code is not None:
            self.problems[len(self.ids)] = (code, msg or "")
        self.ids.append(ident)
        self.statuses.append(status)

    def customer_of(self, it: Item, ident: str) -> str | None:
        """The customer id an item names (``customerId`` or ``externalCustomerId``, exactly
        one), or None after rejecting the item with the reason."""
        external = it.get("external_customer_id")
        customer_id = it.get("customer_id")
        if (external is None) == (customer_id is None):
            self.result(ident, "rejected", "VALIDATION_ERROR", ONE_CUSTOMER)
            return None
        if external is not None:
            found = self.externals.get(external)
            if found is None:
                self.result(
                    ident, "rejected", "CUSTOMER_NOT_FOUND", AUTO_CREATE_OFF.format(ref=external)
                )
            return found
        if customer_id not in self.customers:
            self.reject_missing(ident, "customer", str(customer_id))
            return None
        return str(customer_id)

    def reject_missing(self, ident: str | None, kind: str, ref: str) -> None:
        message = missing_text(kind, ref)
        self.result(ident, "rejected", f"{kind.upper()}_NOT_FOUND", message)

    def time(self, value: str | None, ident: str | None) -> str | None:
        if value is not None and _is_canonical(value):
            return value
        try:
            return clock.normalize(value, self.now)
        except ValueError as exc:
            self.result(ident, "rejected", "INVALID_TIMESTAMP", str(exc))
            return None

    def run_start(self, it: Item) -> None:
        rid: str = it["id"]
        if rid in self.runs:
            return self.result(rid, "duplicate")
        customer_id = self.customer_of(it, rid)
        if customer_id is None:
            return None
        started = self.time(it.get("started_at"), rid)
        if started is None:
            return None
        ref: str = it["workflow"]
        workflow_id = self.workflows.get(ref)
        if workflow_id is None:
            try:
                row = resolve_workflow(self.conn, self.account_id, ref, "workflow")
            except ApiError as exc:
                return self.result(rid, "rejected", exc.code, exc.message)
            workflow_id = self.workflows[ref] = row.id
        self.runs[rid] = [customer_id, _RUNNING, self.owner]
        self.run_workflows[rid] = workflow_id
        self.run_rows.append(
            {
                "account_id": self.account_id,
                "id": rid,
                "customer_id": customer_id,
                "workflow_id": workflow_id,
                "status": _RUNNING,
                "external_run_id": it.get("external_run_id"),
                "correlation_id": it.get("correlation_id"),
                "parent_run_id": it.get("parent_run_id"),
                "meta": it.get("metadata"),
                "started_at": started,
                "created_at": self.now,
                "started_by": self.owner,
            }
        )
        self.run_at.append(len(self.ids))
        return self.result(rid, "created")

    def apply(self, items: Sequence[Item | Rejected], canonical: bool) -> None:
        """Decide every item in order. Events, nearly all of the traffic, are handled inline
        with everything they touch bound to locals; the other kinds go to their methods.
        ``canonical``: every timestamp given is known to be in the wire format already.

        An event of the SDK's usual shape (``_COMMON``) becomes a short row (the
        ``COMMON_COLUMNS``); any other event, a full one (``EVENT_COLUMNS``)."""
        other = {"run.start": self.run_start, "usage": self.usage, "run.end": self.run_end}
        account_id, runs_get, seen, ids = self.account_id, self.runs.get, self.seen_events, self.ids
        add_id, add_status, add_row = ids.append, self.statuses.append, self.event_rows.append
        add_at, check = self.event_at.append, None if canonical else _is_canonical
        for it in items:
            if isinstance(it, Rejected):
                self.result(it.id, "rejected", it.code, it.message)
                continue
            if it["type"] != "event":
                other[it["type"]](it)
                continue
            common = tuple(it) == _COMMON
            if common:
                _, eid, run_id, event_type, meter, quantity, ts, duration, outcome = it.values()
                common = meter is not None  # no meter: an event type, kept on a full row
                if duration is not None and not 0 <= duration <= _MAX_DURATION:
                    duration = _clamp_duration(duration)
            if not common:
                eid, run_id, ts = it["id"], it["run_id"], it.get("timestamp")
            run = runs_get(run_id)
            if run is None:
                self.reject_missing(eid, "run", run_id)
                continue
            if eid in seen:
                self.result(eid, "duplicate")
                continue
            if ts is None or (check is not None and not check(ts)):
                ts = self.time(ts, eid)
                if ts is None:
                    continue
            seen.add(eid)
            add_at(len(ids))
            add_id(eid)
            add_status("created")
            if common:
                add_row(
                    (
                        account_id, eid, run_id, run[0], event_type, meter or event_type,
                        1.0 if quantity is None else quantity, ts, duration, outcome,
                    )
                )  # fmt: skip
            else:
                self.full_rows = True
                add_row(self.event_row(it, run[0], ts))

    def event_row(self, it: Item, customer_id: str, ts: str) -> tuple[Any, ...]:
        """A full ``events`` row (``EVENT_COLUMNS``)."""
        get = it.get
        event_type = it["event_type"]
        quantity = get("quantity")
        meta = get("metadata")
        return (
            self.account_id, it["id"], it["run_id"], customer_id, event_type,
            get("meter") or event_type, 1.0 if quantity is None else quantity, get("units"),
            get("description"), get("correlation_id"), get("parent_event_id"), get("span_id"),
            None if meta is None else json_text(meta), ts, _clamp_duration(get("duration_ms")),
            get("outcome"), get("error_type"), True if get("meter") is None else None,
        )  # fmt: skip

    def usage(self, it: Item) -> None:
        uid: str = it["id"]
        customer_id = self.customer_of(it, uid)
        if customer_id is None:
            return None
        if uid in self.seen_usage:
            return self.result(uid, "duplicate")
        ts = self.time(it.get("timestamp"), uid)
        if ts is None:
            return None
        self.seen_usage.add(uid)
        self.usage_at.append(len(self.ids))
        get = it.get
        self.usage_rows.append(
            (
                self.account_id, uid, "usage", customer_id, it["usage_type"], it["quantity"],
                get("units"), get("description"), get("correlation_id"),
                json_text(get("metadata")), ts,
            )
        )  # fmt: skip
        return self.result(uid, "created")

    def run_end(self, it: Item) -> None:
        run_id: str = it["run_id"]
        given = RunStatus(it["status"])
        status = given.value
        run = self.runs.get(run_id)
        if run is None:
            return self.reject_missing(run_id, "run", run_id)
        if self.owner is not None and run[2] != self.owner:
            return self.result(run_id, "rejected", "RUN_NOT_OWNED", not_owned(run_id))
        if given not in TERMINAL_RUN_STATUSES:
            message = f"a run cannot end {status}"
            return self.result(run_id, "rejected", "INVALID_STATUS", message)
        if run[1] in _ENDED:  # the first end wins; a later one changes nothing
            if run[1] == status:
                return self.result(run_id, "duplicate")
            return self.result(run_id, "duplicate", "RUN_ALREADY_ENDED", _ended(run_id, run[1]))
        ended = self.time(it.get("ended_at"), run_id)
        if ended is None:
            return None
        run[1] = status
        self.end_at[run_id] = len(self.ids)
        self.ends[run_id] = {
            "b_id": run_id,
            "b_status": status,
            "b_ended": ended,
            "b_message": it.get("error_message"),
            "b_code": it.get("error_code"),
            "b_meta": it.get("metadata"),
        }
        return self.result(run_id, "updated")

    def write(self) -> None:
        """Write what the pass decided: runs, then events and usage, then run ends."""
        went_in = bulk_insert_new(self.conn, runs, self.account_id, self.run_rows)
        if went_in is not None:  # PostgreSQL: another transaction stored it after our look-up
            for run_row, index in zip(self.run_rows, self.run_at, strict=True):
                if run_row["id"] not in went_in:
                    self.statuses[index] = "duplicate"
        if self.full_rows:
            self.event_rows = [_full_row(row) for row in self.event_rows]
        event_columns = EVENT_COLUMNS if self.full_rows else COMMON_COLUMNS
        for table, columns, rows, at in (
            (events, event_columns, self.event_rows, self.event_at),
            (usage_records, USAGE_COLUMNS, self.usage_rows, self.usage_at),
        ):
            # short rows have no all-NULL column worth leaving out
            short = columns is COMMON_COLUMNS
            went_in = insert_new(
                self.conn, table, columns, self.account_id, rows, drop_nulls=not short
            )
            if went_in is not None:
                for row, index in zip(rows, at, strict=True):
                    if row[1] not in went_in:
                        self.statuses[index] = "duplicate"
                rows = [row for row in rows if row[1] in went_in]
            if table is events:
                self._roll_events(rows)
            else:
                self._roll_usage(rows)
        self.rollup.write(self.conn, self.account_id, self.run_workflows)
        if self.ends:
            self._end_runs()

    def _roll_events(self, rows: list[tuple[Any, ...]]) -> None:
        add = self.rollup.event
        if not self.full_rows:  # COMMON_COLUMNS rows: metered events without metadata
            # a run's events come together: one rollup step per run and meter, not per event
            metered = self.rollup.metered
            for (run_id, customer_id, meter), group in groupby(rows, _RUN_CUSTOMER_METER):
                same = list(group)
                metered(run_id, customer_id, meter, [r[7] for r in same], [r[6] for r in same])
            return
        for row in rows:
            meta = row[12]
            model = model_of(json.loads(meta)) if meta and '"model"' in meta else ""
            add(row[2], row[3], row[5], bool(row[17]), row[13], row[6], model)

    def _roll_usage(self, rows: list[tuple[Any, ...]]) -> None:
        add = self.rollup.usage_record
        for row in rows:
            meta = row[9]
            model = model_of(json.loads(meta)) if meta and '"model"' in meta else ""
            add(row[3], row[4], row[10], row[5], "usage", None, model)

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
        # only where the run has not ended: a run another transaction ended since our look-up
        # (PostgreSQL: a worker ending it at the same time, whose update we waited for) was
        # ended first, and this end answers as a second end sent afterwards does, a duplicate
        where = (
            runs.c.account_id == self.account_id,
            runs.c.id == bindparam("b_id"),
            runs.c.status.not_in(sorted(_ENDED)),
        )
        plain = update(runs).where(*where).values(values).returning(runs.c.id)
        values["meta"] = bindparam("b_meta")
        merged = update(runs).where(*where).values(values).returning(runs.c.id)
        for end in self.ends.values():
            statement = merged if end["b_meta"] else plain
            if self.conn.execute(statement, end).first() is None:
                self.statuses[self.end_at[end["b_id"]]] = "duplicate"
                stored = self.conn.execute(
                    select(runs.c.status).where(
                        runs.c.account_id == self.account_id, runs.c.id == end["b_id"]
                    )
                ).scalar()
                if stored != end["b_status"]:
                    problem = ("RUN_ALREADY_ENDED", _ended(end["b_id"], str(stored)))
                    self.problems[self.end_at[end["b_id"]]] = problem


class Outcome(NamedTuple):
    """What became of each item, in order: its id, its status (``created``, ``duplicate``,
    ``updated``, ``rejected``) and, by index, the code and message of those that have one."""

    ids: list[str | None]
    statuses: list[str]
    problems: dict[int, tuple[str, str]]


def ingest(
    db: Database,
    account_id: int,
    raw: bytes,
    owner: int | None = None,
    create_customers: bool = True,
) -> Outcome:
    """Validate and apply one ingest request body (the answer is written by the route).
    ``owner``: the public key sending it, which may end only the runs it started.
    ``create_customers``: an unknown ``externalCustomerId`` creates the customer."""
    items, canonical = parse_batch(raw)
    with db.write() as conn:
        batch = _Apply(conn, account_id, items, owner, create_customers)
        batch.apply(items, canonical)
        batch.write()
    return Outcome(batch.ids, batch.statuses, batch.problems)
