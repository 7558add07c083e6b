"""Rollups: usage summed per hour, and per run, in the transaction that stores the rows.

Every path that stores run events or usage records (``/v1/ingest``, ``/run-events[/batch]``,
``/runs/record``, ``/usage/internal``, ``/usage``) feeds the rows that actually went in (never
duplicates) to a :class:`Rollup`, then calls :meth:`Rollup.write` before its transaction
commits. So a usage summary reads ``usage_rollups`` (a row per customer, hour, meter, kind,
workflow and model, plus the same sums account-wide under customer ``*``) instead of every
event, and a run list reads ``run_meters`` instead of each run's events.

The per-row work is a dict update (this runs for every ingested event); the grouping into the
three kinds of rollup rows and the upserts happen once per transaction, a few rows each.
Upserts add to existing rows (``ON CONFLICT … DO UPDATE``), so concurrent writers on PostgreSQL
never lose an increment; quantities are exact (:mod:`.decimals`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import func

from . import decimals
from .schema import run_meters, runs, usage_rollups

__all__ = ["ACCOUNT", "EVENT", "METER", "Rollup", "model_of"]

#: ``customer_id`` of the account-wide rollup rows
ACCOUNT = "*"
#: ``kind`` of a real meter, and of an event type recorded without one (``run.event()``)
METER = "meter"
EVENT = "event"

# [run_events, usage_records, charges, whole quantity, fractional quantity, amount micros,
#  cost units]
_Sums = list[Any]


def model_of(meta: Any) -> str:
    """The ``model`` a row's metadata names (``''`` when none): LLM usage groups by it."""
    if isinstance(meta, dict):
        model = meta.get("model")
        if isinstance(model, str):
            return model[:256]
    return ""


def _add(sums: _Sums, quantity: float) -> None:
    if quantity.is_integer():
        sums[3] += int(quantity)
    else:
        sums[4] += Decimal(repr(quantity))


#: below this, a float sum of whole floats is exact (every partial sum is a representable int)
_EXACT_FLOAT_INTS = float(2**53)


def _whole_sum(quantities: Sequence[float]) -> int | None:
    """The exact sum of ``quantities`` when all are whole floats (what nearly every batch
    holds) and it stays below 2**53, else None. Runs in C, not one Python step per value:
    ``math.fsum`` is correctly rounded, and an integer sum below 2**53 needs no rounding."""
    try:
        if not all(map(float.is_integer, quantities)):
            return None
    except TypeError:  # an int among them: the caller adds them one by one
        return None
    total = math.fsum(quantities)
    return int(total) if total < _EXACT_FLOAT_INTS else None


class Rollup:
    """The sums of one transaction's new rows, waiting to be added to the rollup tables."""

    __slots__ = ("events", "usage")

    def __init__(self) -> None:
        # (run_id, customer_id, hour, meter, kind, model) -> sums
        self.events: dict[tuple[str, str, str, str, str, str], _Sums] = {}
        # (customer_id, hour, meter, family, model) -> sums
        self.usage: dict[tuple[str, str, str, str, str], _Sums] = {}

    def event(
        self,
        run_id: str,
        customer_id: str,
        meter: str,
        event_only: bool,
        timestamp: str,
        quantity: float,
        model: str = "",
        cost_units: float | None = None,
    ) -> None:
        """One stored run event (``meter`` is the stored one: the event type when none)."""
        key = (run_id, customer_id, timestamp[:13], meter, EVENT if event_only else METER, model)
        sums = self.events.get(key)
        if sums is None:
            sums = self.events[key] = [0, 0, 0, 0, decimals.ZERO, 0, decimals.ZERO]
        sums[0] += 1
        _add(sums, quantity)
        if cost_units:
            sums[6] += decimals.exact(cost_units)

    def metered(
        self,
        run_id: str,
        customer_id: str,
        meter: str,
        timestamps: Sequence[str],
        quantities: Sequence[float],
    ) -> None:
        """Many stored metered events of one run, customer and meter, without a model (the
        SDK's usual events; timestamps in the wire format): the same sums as :meth:`event` for
        each, with the per-event work done in C when they fall in one hour."""
        hour = min(timestamps)[:13]
        whole = _whole_sum(quantities) if max(timestamps)[:13] == hour else None
        if whole is None:
            for ts, quantity in zip(timestamps, quantities, strict=True):
                self.event(run_id, customer_id, meter, False, ts, quantity)
            return
        key = (run_id, customer_id, hour, meter, METER, "")
        sums = self.events.get(key)
        if sums is None:
            sums = self.events[key] = [0, 0, 0, 0, decimals.ZERO, 0, decimals.ZERO]
        sums[0] += len(quantities)
        sums[3] += whole

    def usage_record(
        self,
        customer_id: str,
        meter: str,
        timestamp: str,
        quantity: float,
        family: str,
        amount_micros: int | None = None,
        model: str = "",
    ) -> None:
        """One stored usage record (``family`` "usage") or charge (``family`` "charge")."""
        key = (customer_id, timestamp[:13], meter, family, model)
        sums = self.usage.get(key)
        if sums is None:
            sums = self.usage[key] = [0, 0, 0, 0, decimals.ZERO, 0, decimals.ZERO]
        sums[2 if family == "charge" else 1] += 1
        _add(sums, quantity)
        sums[5] += amount_micros or 0

    def __bool__(self) -> bool:
        return bool(self.events or self.usage)

    def hourly(self, workflow_of: dict[str, str]) -> dict[tuple[str, ...], _Sums]:
        """(customer, hour, meter, kind, workflow, model) -> sums, with the account rows."""
        out: dict[tuple[str, ...], _Sums] = {}

        def merge(key: tuple[str, ...], sums: _Sums) -> None:
            for k in (key, (ACCOUNT, *key[1:])):
                found = out.get(k)
                if found is None:
                    out[k] = list(sums)
                else:
                    for i in range(6):
                        found[i] += sums[i]

        for (run_id, customer, hour, meter, kind, model), sums in self.events.items():
            merge((customer, hour, meter, kind, workflow_of.get(run_id, ""), model), sums)
        for (customer, hour, meter, _family, model), sums in self.usage.items():
            merge((customer, hour, meter, METER, "", model), sums)
        return out

    def per_run(self) -> dict[tuple[str, str, str], _Sums]:
        """(run, meter, kind) -> sums."""
        out: dict[tuple[str, str, str], _Sums] = {}
        for (run_id, _customer, _hour, meter, kind, _model), sums in self.events.items():
            key = (run_id, meter, kind)
            found = out.get(key)
            if found is None:
                out[key] = list(sums)
            else:
                found[0] += sums[0]
                found[3] += sums[3]
                found[4] += sums[4]
                found[6] += sums[6]
        return out

    def write(
        self, conn: Connection, account_id: int, workflows: Mapping[str, str] | None = None
    ) -> None:
        """Add the sums to the rollup tables (inside the caller's write transaction).
        ``workflows``: run id -> workflow id of runs the caller knows (the rest are read)."""
        if not self:
            return
        known = workflows or {}
        run_ids = sorted({key[0] for key in self.events if key[0] not in known})
        workflow_of: dict[str, str] = {rid: known[rid] for rid, *_ in self.events if rid in known}
        for start in range(0, len(run_ids), 500):
            for run_id, workflow_id in conn.execute(
                select(runs.c.id, runs.c.workflow_id).where(
                    runs.c.account_id == account_id, runs.c.id.in_(run_ids[start : start + 500])
                )
            ):
                workflow_of[run_id] = workflow_id
        pg = conn.dialect.name == "postgresql"

        def exact(value: Any) -> Any:
            return value if pg else decimals.decimal_text(value)

        def quantity(sums: _Sums) -> Any:
            return exact(sums[4] + sums[3])

        hourly = [
            {
                "account_id": account_id,
                "customer_id": customer,
                "hour": hour,
                "meter": meter,
                "kind": kind,
                "workflow_id": workflow,
                "model": model,
                "run_events": sums[0],
                "usage_records": sums[1],
                "charges": sums[2],
                "quantity": quantity(sums),
                "amount_micros": sums[5],
            }
            for (customer, hour, meter, kind, workflow, model), sums in sorted(
                self.hourly(workflow_of).items()
            )
        ]
        _upsert(conn, usage_rollups, hourly, ("run_events", "usage_records", "charges"))
        per_run = [
            {
                "account_id": account_id,
                "run_id": run_id,
                "meter": meter,
                "kind": kind,
                "events": sums[0],
                "quantity": quantity(sums),
                "cost_units": exact(sums[6]),
            }
            for (run_id, meter, kind), sums in sorted(self.per_run().items())
        ]
        _upsert(conn, run_meters, per_run, ("events",))
        self.events.clear()
        self.usage.clear()


#: the upsert of each (dialect, table): built once (SQLAlchemy still caches its compiled form)
_upserts: dict[tuple[str, str], Any] = {}


def _upsert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], counts: Iterable[str]
) -> None:
    """Insert rows or add them to the rows with the same key (rows sorted by key, so two
    PostgreSQL writers lock rows in the same order and cannot deadlock)."""
    if not rows:
        return
    key = (conn.dialect.name, table.name)
    statement = _upserts.get(key)
    if statement is None:
        statement = _upserts[key] = _upsert_statement(conn.dialect.name, table, counts)
    conn.execute(statement, rows)


def _upsert_statement(dialect_name: str, table: Table, counts: Iterable[str]) -> Any:
    unique = next(ix for ix in table.indexes if ix.unique)
    keys = [c.name for c in unique.columns]
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    excluded = stmt.excluded
    changes: dict[str, Any] = {name: table.c[name] + excluded[name] for name in counts}
    if "amount_micros" in table.c:
        changes["amount_micros"] = table.c.amount_micros + excluded.amount_micros
    for name in ("quantity", "cost_units"):
        if name not in table.c:
            continue
        if dialect is postgresql:
            changes[name] = table.c[name] + excluded[name]
        else:
            changes[name] = func.drip_dec_add(table.c[name], excluded[name])
    return stmt.on_conflict_do_update(index_elements=keys, set_=changes)
