"""``GET /v1/usage/summary``: usage totals for a time window, grouped as asked, from rollups.

The window is half-open, ``[since, until)``. Whole hours inside it are read from
``usage_rollups`` (see :mod:`.rollups`): a customer's summary reads that customer's few rows per
hour, a whole-account summary reads the account-wide rows, so neither grows with the number of
events. The partial hours at a window's edges (a ``since`` or ``until`` that is not on the hour)
are summed from the events and usage records themselves through their time indexes, so totals
are exact for any window.

Every total is split by ``kind``: ``meter`` for metered usage (``@metered``, ``track_usage``,
charges, events that name a meter) and ``event`` for event types recorded without a meter
(``run.event("report.sent")``, the published client's ``emit_event``), which are counts of
things that happened rather than billable meters.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, literal_column, select

from drip.models import MeterTotal, UsageGroup, UsageSummary

from .. import clock
from ..errors import ApiError
from ..pricing import format_usdc
from . import decimals
from .customers import customer_filter, external_ids
from .database import Database
from .rollups import ACCOUNT, Rollup, model_of
from .schema import events, runs, usage_records, usage_rollups

__all__ = ["GROUPS", "parse_group_by", "parse_instant", "usage_summary"]

#: what ``group_by`` may name
GROUPS = ("meter", "customer", "workflow", "day", "hour", "model")

_Sums = list[Any]  # [run_events, usage_records, charges, whole quantity, fraction, micros]


def parse_instant(value: str | None, field: str) -> str | None:
    """An ISO-8601 date or date-time as the stored format (UTC); 422 naming the field."""
    if value is None or value == "":
        return None
    try:
        return clock.normalize(value, "")
    except ValueError as exc:
        raise ApiError(422, "VALIDATION_ERROR", f"{field}: {exc}") from None


def parse_group_by(value: str | Sequence[str] | None) -> list[str]:
    """``meter,day`` (or repeated parameters) as a list; 422 naming an unknown grouping."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part not in GROUPS:
            allowed = ", ".join(GROUPS)
            raise ApiError(
                422, "VALIDATION_ERROR", f"groupBy: unknown grouping {part!r} (one of {allowed})"
            )
        if part not in out:
            out.append(part)
    if not out:  # ``groupBy=`` given with nothing in it: a mistake, not "no grouping"
        raise ApiError(
            422, "VALIDATION_ERROR", f"groupBy: empty (give one or more of {', '.join(GROUPS)})"
        )
    return out


def _hour_start(moment: str) -> datetime:
    return datetime.strptime(moment[:13], "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)


def _hour_after(hour: datetime) -> datetime | None:
    """The next hour; None after the last hour a datetime holds (9999-12-31T23)."""
    try:
        return hour + timedelta(hours=1)
    except OverflowError:
        return None


def _split(
    since: str | None, until: str | None
) -> tuple[str | None, str | None, list[tuple[str | None, str | None]]]:
    """(first whole hour, end hour, edge windows): whole hours ``[lo, hi)`` as ``YYYY-MM-DDTHH``
    keys, and the partial-hour windows to read from the rows themselves."""
    lo = hi = None
    edges: list[tuple[str | None, str | None]] = []
    if since is not None:
        start = _hour_start(since)
        if clock.to_iso(start) != since:
            after = _hour_after(start)
            if after is None:  # since lies in the very last hour: read the window's rows
                return since, since, [(since, until)]
            start = after
            edges.append((since, clock.to_iso(start)))
        lo = clock.to_iso(start)
    if until is not None:
        end = _hour_start(until)
        if clock.to_iso(end) != until:
            edges.append((clock.to_iso(end), until))
        hi = clock.to_iso(end)
    if lo is not None and hi is not None and hi <= lo:
        # the window lies within one or two partial hours: read it all from the rows
        return lo, lo, [(since, until)]
    return lo, hi, edges


class _Totals:
    """Sums keyed by the requested grouping, and per (meter, kind) for ``meters``."""

    def __init__(self, group_by: list[str]) -> None:
        self.group_by = group_by
        self.groups: dict[tuple[str, ...], _Sums] = {}
        self.meters: dict[tuple[str, str], _Sums] = {}

    def add(
        self,
        customer: str,
        hour: str,
        meter: str,
        kind: str,
        workflow: str,
        model: str,
        sums: Sequence[Any],
        quantity: Any,
    ) -> None:
        values = {
            "meter": meter,
            "customer": customer,
            "workflow": workflow,
            "day": hour[:10],
            "hour": hour,
            "model": model,
        }
        keys: list[tuple[dict[Any, _Sums], Any]] = [(self.meters, (meter, kind))]
        if self.group_by:
            group = (kind, *(values[g] for g in self.group_by))
            keys.append((self.groups, group))
        for table, key in keys:
            found = table.get(key)
            if found is None:
                found = table[key] = [0, 0, 0, 0, decimals.ZERO, 0]
            found[0] += sums[0]
            found[1] += sums[1]
            found[2] += sums[2]
            found[4] += quantity
            found[5] += sums[5]

    def customers(self) -> set[str]:
        """The customers the groups name (none unless grouped by customer)."""
        if "customer" not in self.group_by:
            return set()
        at = self.group_by.index("customer") + 1  # a group's key: (kind, *dimensions)
        return {key[at] for key in self.groups}

    def summary(
        self,
        customer_id: str | None,
        since: str | None,
        until: str | None,
        external: dict[str, str | None] | None = None,
    ) -> UsageSummary:
        """``external``: the own id of each customer the groups name."""
        external = external or {}
        # a total that counts nothing came from an hour's rollups less rows that made all of
        # it (``_cheaper_edges``): every stored row counts one, so no real total is empty
        tables: tuple[dict[Any, _Sums], ...] = (self.meters, self.groups)
        for table in tables:
            for key in [k for k, sums in table.items() if not any(sums[:3])]:
                del table[key]
        meters = [
            MeterTotal(
                meter=meter,
                kind=kind,
                quantity=float(sums[4]),
                quantity_decimal=decimals.decimal_text(sums[4]),
                usage_records=sums[1],
                charges=sums[2],
                run_events=sums[0],
                amount_usdc=format_usdc(int(sums[5])),
            )
            for (meter, kind), sums in sorted(self.meters.items())
        ]
        groups = []
        for key, sums in sorted(self.groups.items()):
            dims = dict(zip(self.group_by, key[1:], strict=True))
            groups.append(
                UsageGroup(
                    kind=key[0],
                    meter=dims.get("meter"),
                    customer_id=dims.get("customer"),
                    external_customer_id=external.get(dims.get("customer", "")),
                    workflow_id=dims.get("workflow") or None,
                    model=dims.get("model") or None,
                    day=dims.get("day"),
                    hour=None if "hour" not in dims else dims["hour"] + ":00:00Z",
                    quantity=decimals.decimal_text(sums[4]),
                    usage_records=sums[1],
                    charges=sums[2],
                    run_events=sums[0],
                    amount_usdc=format_usdc(int(sums[5])),
                )
            )
        return UsageSummary(
            customer_id=customer_id,
            meters=meters,
            since=since,
            until=until,
            group_by=self.group_by,
            groups=groups,
        )


@functools.lru_cache(maxsize=256)
def _rollup_query(
    dialect: str, customer: str, meter: bool, lo: bool, hi: bool, group_by: tuple[str, ...]
) -> Any:
    """The rollup query of one shape, built once (a statement built per request cost more
    than its query: ~0.3 ms of a ~1.3 ms summary). ``customer`` is ``"one"`` (bound),
    ``"each"`` (grouped by customer) or ``"account"`` (the account's own rows)."""
    r = usage_rollups
    where = [r.c.account_id == bindparam("account_id")]
    if customer == "one":
        where.append(r.c.customer_id == bindparam("customer_id"))
    elif customer == "each":
        where.append(r.c.customer_id != ACCOUNT)
    else:
        where.append(r.c.customer_id == ACCOUNT)
    if meter:
        where.append(r.c.meter == bindparam("meter"))
    if lo:
        where.append(r.c.hour >= bindparam("lo"))
    if hi:
        where.append(r.c.hour < bindparam("hi"))
    # grouped in SQL: a whole-account summary sums ~10k hourly rows into a few groups
    blank: Any = literal_column("''")
    wanted = set(group_by)
    dims = [
        r.c.customer_id if "customer" in wanted else blank,
        r.c.hour
        if "hour" in wanted
        else func.substr(r.c.hour, 1, 10)
        if "day" in wanted
        else blank,
        r.c.meter,
        r.c.kind,
        r.c.workflow_id if "workflow" in wanted else blank,
        r.c.model if "model" in wanted else blank,
    ]
    keys = [d for d in dims if d is not blank]
    return (
        select(
            *dims,
            func.sum(r.c.run_events),
            func.sum(r.c.usage_records),
            func.sum(r.c.charges),
            decimals.decimal_sum(dialect, r.c.quantity),
            func.sum(r.c.amount_micros),
        )
        .where(*where)
        .group_by(*keys)
    )


def _from_rollups(
    conn: Connection,
    totals: _Totals,
    account_id: int,
    customer_id: str | None,
    meter: str | None,
    lo: str | None,
    hi: str | None,
) -> None:
    each = "customer" in totals.group_by
    shape = "one" if customer_id is not None else "each" if each else "account"
    query = _rollup_query(
        conn.dialect.name, shape, meter is not None, lo is not None, hi is not None,
        tuple(sorted(totals.group_by)),
    )  # fmt: skip
    params: dict[str, Any] = {"account_id": account_id, "customer_id": customer_id, "meter": meter}
    params["lo"], params["hi"] = lo and lo[:13], hi and hi[:13]
    add, as_decimal = totals.add, decimals.as_decimal
    for cus, hour, name, kind, workflow, model, ev, ur, ch, quantity, micros in conn.execute(
        query, params
    ):
        sums = (int(ev), int(ur), int(ch), 0, 0, int(micros))
        add(cus, hour, name, kind, workflow, model, sums, as_decimal(quantity))


def _time_range(column: Any, start: str | None, end: str | None) -> list[Any]:
    where = []
    if start is not None:
        where.append(column >= start)
    if end is not None:
        where.append(column < end)
    return where


def _from_rows(
    conn: Connection,
    totals: _Totals,
    account_id: int,
    customer_id: str | None,
    meter: str | None,
    windows: Iterable[tuple[str | None, str | None]],
    sign: int = 1,
) -> None:
    """Partial hours: sum the stored rows the way ingest sums them into the rollups (``sign``
    -1: take them off, see ``_cheaper_edges``)."""
    e, u = events, usage_records
    rollup = Rollup()
    workflow_of: dict[str, str] = {}
    for start, end in windows:
        e_where = [e.c.account_id == account_id, *_time_range(e.c.timestamp, start, end)]
        u_where = [u.c.account_id == account_id, *_time_range(u.c.timestamp, start, end)]
        if customer_id is not None:
            e_where.append(e.c.customer_id == customer_id)
            u_where.append(u.c.customer_id == customer_id)
        if meter is not None:
            e_where.append(e.c.meter == meter)
            u_where.append(u.c.usage_type == meter)
        joined = e.outerjoin(
            runs, and_(runs.c.account_id == e.c.account_id, runs.c.id == e.c.run_id)
        )
        for run_id, cus, name, only, ts, quantity, meta, workflow in conn.execute(
            select(
                e.c.run_id, e.c.customer_id, e.c.meter, e.c.event_only, e.c.timestamp,
                e.c.quantity, e.c.meta, runs.c.workflow_id,
            ).select_from(joined).where(*e_where)
        ):  # fmt: skip
            workflow_of[run_id] = workflow or ""
            rollup.event(run_id, cus, name, bool(only), ts, quantity, model_of(_meta(meta)))
        for cus, name, ts, quantity, family, micros, meta in conn.execute(
            select(
                u.c.customer_id, u.c.usage_type, u.c.timestamp, u.c.quantity, u.c.family,
                u.c.amount_micros, u.c.meta,
            ).where(*u_where)
        ):  # fmt: skip
            rollup.usage_record(cus, name, ts, quantity, family, micros, model_of(_meta(meta)))
    for (cus, hour, name, kind, workflow, model), sums in rollup.hourly(workflow_of).items():
        if cus != ACCOUNT:
            if sign < 0:
                sums = [-value for value in sums]
            totals.add(cus, hour, name, kind, workflow, model, sums, sums[4] + sums[3])


def _meta(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def usage_summary(
    db: Database,
    account_id: int,
    customer_id: str | None,
    meter: str | None,
    since: str | None = None,
    until: str | None = None,
    group_by: list[str] | None = None,
    external_customer_id: str | None = None,
) -> UsageSummary:
    """Totals per meter (and per group) over usage records, charges and run events in
    ``[since, until)``; ``since``/``until`` already in the stored format. ``customer_id`` is
    Drip's id or the external one (see ``customer_filter``); an unknown customer is a 404."""
    if since is not None and until is not None and until < since:
        raise ApiError(422, "VALIDATION_ERROR", "until: must not be before since")
    totals = _Totals(group_by or [])
    lo, hi, edges, rests = _cheaper_edges(*_split(since, until))
    with db.read() as conn:
        customer_id = customer_filter(conn, account_id, customer_id, external_customer_id)
        if lo is None or hi is None or lo < hi:
            _from_rollups(conn, totals, account_id, customer_id, meter, lo, hi)
        if edges:
            _from_rows(conn, totals, account_id, customer_id, meter, edges)
        if rests:
            _from_rows(conn, totals, account_id, customer_id, meter, rests, sign=-1)
        external = external_ids(conn, account_id, totals.customers())
    return totals.summary(customer_id, since, until, external)


def _cheaper_edges(
    lo: str | None, hi: str | None, edges: list[tuple[str | None, str | None]]
) -> tuple[str | None, str | None, list[tuple[str | None, str | None]], list[tuple[str, str]]]:
    """(first whole hour, end hour, edge windows to add from rows, windows to take off): each
    partial hour at an edge is read the cheaper of two exact ways, its own rows, or its whole
    hour from the rollups (the range of hours grows by one) less the rows of the rest of that
    hour, whichever part is shorter. At 10M events an hour holds ~14,000 events: an edge a
    minute from the hour reads a minute of rows, not 59. Rollups hold exactly the sums of
    their hour's rows (the same transaction writes both), so the difference is exact."""
    if lo is not None and lo == hi:  # a window inside one or two partial hours: its rows
        return lo, hi, edges, []
    add: list[tuple[str | None, str | None]] = []
    take: list[tuple[str, str]] = []
    for start, end in edges:
        assert start is not None and end is not None  # _split gives edges with both bounds
        hour = _hour_start(start)
        after = _hour_after(hour)
        first, last = clock.to_iso(hour), clock.to_iso(after) if after else None
        if last is None:  # the last hour a datetime holds: its rows
            add.append((start, end))
        elif end == last and _seconds((first, start)) < _seconds((start, end)):
            lo = first  # the since edge: its hour, less [hour, since)
            take.append((first, start))
        elif start == first and _seconds((end, last)) < _seconds((start, end)):
            hi = last  # the until edge: its hour, less [until, next hour)
            take.append((end, last))
        else:
            add.append((start, end))
    return lo, hi, add, take


def _seconds(window: tuple[str, str]) -> float:
    """The length of a window between two stored-format moments."""
    start, end = (datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ") for moment in window)
    return (end - start).total_seconds()
