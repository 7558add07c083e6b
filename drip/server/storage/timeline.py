"""Reading runs: details and the timeline (paged; events serialised from rows directly).

Costs in USDC are the flat price of each event's meter (``drip serve --price``) times its
quantity, computed when read: prices are server settings, not stored facts.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Iterable, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

import pydantic_core
from sqlalchemy import (
    BigInteger,
    Connection,
    LargeBinary,
    Row,
    Text,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from drip.models import (
    RunDetails,
    RunLinks,
    RunStatus,
    RunTimeline,
    RunTotals,
    TimelineSummary,
)

from .. import clock
from ..pricing import Pricing, format_usdc
from . import decimals
from .cursors import decode_cursor, encode_cursor
from .database import Database
from .refs import require_run
from .runs import TIMELINE_MAX, number_text
from .schema import customers, events, run_meters

__all__ = ["DETAILS_TIMELINE_LIMIT", "get_run", "get_timeline"]

#: events rendered inside ``GET /runs/{id}`` (for the 0.1.2 core async client); the timeline
#: endpoint has its own ``limit``
DETAILS_TIMELINE_LIMIT = 1000

# --------------------------------------------------------------------------------------------
# reading a run


def _finite(column: Any, otherwise: Any) -> Any:
    """SQL: ``column`` when it is a finite number, else ``otherwise``. An older server stored
    what came (1e400 is infinity): SQLite writes infinity into JSON as ``Inf`` (no JSON at
    all), PostgreSQL as the string ``"Infinity"``. PostgreSQL orders NaN above infinity;
    SQLite stores NaN as NULL."""
    return case(
        (and_(column > literal(-math.inf), column < literal(math.inf)), column), else_=otherwise
    )


def _shown_duration() -> Any:
    """``duration_ms`` as ``clock.clamp_duration`` stores it: durations an older server stored
    as they came (-5, 1e300, infinity, NaN) are read clamped, so no answer holds a number JSON
    cannot carry or a bar no chart can draw."""
    d = events.c.duration_ms
    most = literal(float(clock.MAX_DURATION_MS))
    return case(
        (d.between(literal(0.0), most), d),
        (and_(d < literal(0.0), d > literal(-math.inf)), literal(0.0)),
        (and_(d > most, d < literal(math.inf)), most),
        else_=null(),
    )


#: an event's quantity and cost as shown: an infinite one (stored before the checks) is 0 (its
#: price is 0 too: ``Pricing.micros``) and no cost
_QUANTITY = _finite(events.c.quantity, literal(0.0))
_COST_UNITS = _finite(events.c.cost_units, null())


#: the columns a timeline shows, in the order ``_event_dicts`` unpacks them
_EVENT_COLUMNS = (
    events.c.seq, events.c.id, events.c.event_type, events.c.timestamp, _QUANTITY,
    events.c.units, events.c.description, _COST_UNITS, events.c.correlation_id,
    events.c.parent_event_id, events.c.span_id, _shown_duration(), events.c.outcome,
    events.c.error_type, events.c.meter,
    # the JSON text as stored: parsed here only when there is some (most events have none)
    type_coerce(events.c.meta, Text),
)  # fmt: skip


def _event_dicts(rows: Sequence[Any], pricing: Pricing) -> list[dict[str, Any]]:
    """The events as ``TimelineEvent`` JSON objects (camelCase, every key), built straight from
    the rows: a pydantic model per event cost ~85% of a 10,000-event timeline. A test pins
    these to the model's own rendering."""
    prices: dict[tuple[str, float], str] = {}  # most events of a run share meter and quantity
    out = []
    for (
        _, eid, event_type, ts, quantity, units, description, cost_units, correlation_id,
        parent_event_id, span_id, duration_ms, outcome, error_type, meter, meta,
    ) in rows:  # fmt: skip
        price_key = (meter, quantity)
        cost = prices.get(price_key)
        if cost is None:
            cost = prices[price_key] = format_usdc(pricing.micros(meter, quantity))
        if isinstance(meta, str):
            meta = json.loads(meta)
        out.append(
            {
                "id": eid,
                "eventType": event_type,
                "timestamp": ts,
                "quantity": quantity,
                "units": units,
                "description": description,
                "costUnits": cost_units,
                "costUsdc": cost,
                "correlationId": correlation_id,
                "parentEventId": parent_event_id,
                "spanId": span_id,
                "durationMs": duration_ms,
                "outcome": outcome,
                "errorType": error_type,
                "meter": meter,
                "charge": None,
                "metadata": {**(meta or {}), "quantity": quantity, "units": units},
            }
        )
    return out


def _totals(
    conn: Connection, pricing: Pricing, account_id: int, run_id: str
) -> tuple[tuple[int, float, float | None], int]:
    """((events, quantity, cost units), charged micros) of the whole run, from ``run_meters``
    (a few rows per run however many events it has)."""
    m = run_meters
    count, quantity, cost = 0, decimals.ZERO, decimals.ZERO
    per_meter: dict[str, Decimal] = {}
    for meter, events_, q, c in conn.execute(
        select(m.c.meter, m.c.events, m.c.quantity, m.c.cost_units).where(
            m.c.account_id == account_id, m.c.run_id == run_id
        )
    ):
        count += events_
        q = decimals.as_decimal(q)
        quantity += q
        cost += decimals.as_decimal(c)
        per_meter[meter] = per_meter.get(meter, decimals.ZERO) + q
    # priced per meter, as the events would be in sum
    micros = sum(pricing.micros(meter, float(q)) for meter, q in per_meter.items())
    return (count, float(quantity), float(cost)), micros


def _read_run(
    db: Database,
    pricing: Pricing,
    account_id: int,
    run_id: str,
    limit: int,
    after: tuple[str, int] | None = None,
    columns: Sequence[Any] = _EVENT_COLUMNS,
) -> tuple[Row[Any], str | None, Sequence[Any], tuple[int, float, float | None], int]:
    """(run, customer name, up to ``limit`` + 1 events after ``after``, totals, charged)."""
    e = events
    where = [e.c.account_id == account_id, e.c.run_id == run_id]
    if after is not None:
        where.append(tuple_(e.c.timestamp, e.c.seq) > tuple_(*after))
    with db.read() as conn:
        row = require_run(conn, account_id, run_id)
        customer_name = conn.execute(
            select(customers.c.external_customer_id).where(
                customers.c.account_id == account_id, customers.c.id == row.customer_id
            )
        ).scalar()
        result = conn.execute(
            select(*columns).where(*where).order_by(e.c.timestamp, e.c.seq).limit(limit + 1)
        )
        if len(columns) == 1:
            # one column (each event's JSON as bytes): the driver's own rows, unpacked as they
            # come, each gone at once. SQLAlchemy's row objects cost ~2 ms per 10,000 events;
            # kept alive through the call they were promoted by the garbage collector into its
            # oldest generation, so that every few calls paid a full collection of the whole
            # heap. Iterating measured 0.5-1 ms less CPU than ``fetchall()`` (10,000 live tuples)
            cursor = typing.cast(Iterable[tuple[Any]], result.cursor)  # DB-API cursors iterate
            rows: Sequence[Any] = [value for (value,) in cursor]
            result.close()
        else:
            rows = result.all()
        totals, micros = _totals(conn, pricing, account_id, run_id)
    return row, customer_name, rows, totals, micros


#: what the database writes as an event's ``costUsdc`` when the server must price it (a
#: priced meter): an empty string, so the text ends in ``""}`` and the price goes in between
_PRICE_HERE = ""

_DECODER = json.JSONDecoder()


def _priced(pricing: Pricing) -> Any:
    """SQL: true for the events whose meter has a price (their cost is computed here, in
    Decimal, as ``Pricing.micros`` does); every other event costs ``"0.000000"``, which the
    database writes itself."""
    meter = events.c.meter
    if pricing.default:
        free = [name for name, price in pricing.prices.items() if not price]
        return meter.not_in(free) if free else true()
    priced = [name for name, price in pricing.prices.items() if price]
    return meter.in_(priced) if priced else false()


#: the integer arithmetic of ``_sql_micros`` stays within a signed 64-bit integer
_INT_MAX = 2**63 - 1


def _sql_micros(pricing: Pricing) -> Any:
    """SQL: an event's cost in micros where integer arithmetic gives ``Pricing.micros``
    exactly, else NULL (the server prices it). That is a whole, non-negative quantity ``q``
    (token counts, calls) and a price of ``n/d`` micros per unit: ``q·n/d`` rounded half up
    is ``(2·q·n + d) div 2d``, bounded so that it never leaves 64 bits."""
    q = events.c.quantity
    whole = cast(q, BigInteger)

    def micros(price: Decimal) -> Any:
        num, den = price.as_integer_ratio()
        shared = math.gcd(num * 1_000_000, den)
        n, d = num * 1_000_000 // shared, den // shared
        if n <= 0 or 2 * n > _INT_MAX or 2 * d > _INT_MAX:
            return null()
        bound = (_INT_MAX - d) // (2 * n)
        # nested: PostgreSQL may evaluate an AND's terms in any order, and the cast of a
        # quantity out of range (1e27, stored before the checks) would be an error
        in_range = and_(q >= 0, q <= bound)
        exact = case((q == whole, (whole * (2 * n) + d) // (2 * d)), else_=null())
        return case((in_range, exact), else_=null())

    whens = [(events.c.meter == name, micros(p)) for name, p in pricing.prices.items() if p]
    otherwise = micros(pricing.default) if pricing.default else null()
    return case(*whens, else_=otherwise) if whens else otherwise


def _usdc_text(dialect: str, micros: Any) -> Any:
    """SQL: whole micros (>= 0) as ``format_usdc`` writes them, ``"1.500000"``."""
    whole, fraction = micros // 1_000_000, micros % 1_000_000
    if dialect == "postgresql":
        return func.format("%s.%s", whole, func.lpad(cast(fraction, Text), 6, "0"))
    return func.printf("%d.%06d", whole, fraction)


def _json_column(dialect: str, pricing: Pricing) -> Any:
    """Each event as one value: its whole JSON in UTF-8 bytes, written by the database (C
    code, one value per row instead of seventeen values and a dict), ``costUsdc`` included for
    the meters without a price, so most rows need no Python at all. An event that needs the server (a priced meter,
    or metadata the database cannot read) comes with a prefix, a JSON array ``[meter or null,
    quantity as exact text or null, the stored metadata or null]`` before its object, and an
    empty ``costUsdc`` (see ``_event_documents``). A test pins the result to the ``TimelineEvent``
    model's rendering on both dialects."""
    e = events
    fields = (
        ("id", e.c.id), ("eventType", e.c.event_type), ("timestamp", e.c.timestamp),
        ("quantity", _QUANTITY), ("units", e.c.units), ("description", e.c.description),
        ("costUnits", _COST_UNITS), ("correlationId", e.c.correlation_id),
        ("parentEventId", e.c.parent_event_id), ("spanId", e.c.span_id),
        ("durationMs", _shown_duration()), ("outcome", e.c.outcome),
        ("errorType", e.c.error_type), ("meter", e.c.meter), ("charge", null()),
    )  # fmt: skip
    meta = type_coerce(e.c.meta, Text)
    if dialect == "postgresql":
        merged: Any = func.coalesce(cast(meta, JSONB), func.jsonb_build_object()).op("||")(
            func.jsonb_build_object("quantity", _QUANTITY, "units", e.c.units)
        )
        build, array = func.json_build_object, func.json_build_array
        # float8 as text is the shortest exact form (PostgreSQL 12+), as psycopg reads it
        exact: Any = cast(e.c.quantity, Text)
        odd: Any = null()  # jsonb would not have stored it
    else:
        valid = case((func.json_valid(meta), meta), else_="{}")
        # most events carry no metadata: building the object is cheaper than json_set on "{}"
        merged = case(
            (meta.is_(None), func.json_object("quantity", _QUANTITY, "units", e.c.units)),
            else_=func.json_set(valid, "$.quantity", _QUANTITY, "$.units", e.c.units),
        )
        build, array = func.json_object, func.json_array
        # 17 significant digits: the stored double exactly (SQLite's own text has 15)
        exact = func.printf("%!.17g", e.c.quantity)
        # metadata stored before the checks that SQLite cannot read as JSON (NaN): merged by
        # the server, with Python's lenient parser
        odd = and_(meta.is_not(None), not_(func.json_valid(meta)))
    micros = _sql_micros(pricing)
    # a priced meter that the database cannot price exactly: priced by the server
    by_server = and_(_priced(pricing), micros.is_(None))
    args = [part for name, column in fields for part in (literal(name), column)]
    cost = case(
        (not_(_priced(pricing)), literal(format_usdc(0))),
        (micros.is_not(None), _usdc_text(dialect, micros)),
        else_=literal(_PRICE_HERE),
    )
    # costUsdc last: the rows priced by the server get their price put into its empty string
    document = cast(build(*args, literal("metadata"), merged, literal("costUsdc"), cost), Text)
    prefix = array(
        case((by_server, e.c.meter), else_=null()),
        case((by_server, exact), else_=null()),
        case((odd, meta), else_=null()) if dialect != "postgresql" else null(),
    )
    slow = or_(by_server, odd) if dialect != "postgresql" else by_server
    text = case((slow, cast(prefix, Text).concat(document)), else_=document)
    # as UTF-8 bytes, the body's own encoding: no str of each event decoded by the driver,
    # then joined and encoded again (SQLite's cast is free; PostgreSQL sends bytea)
    if dialect == "postgresql":
        return func.convert_to(text, literal("UTF8"), type_=LargeBinary)
    return cast(text, LargeBinary)


#: ``_json_column`` by (dialect, prices), built once: its ~200 SQL expression objects took
#: ~1.5 ms to build on every request
_COLUMNS: dict[tuple[Any, ...], Any] = {}


def _document_column(dialect: str, pricing: Pricing) -> Any:
    """``_json_column(dialect, pricing)``, built on first use (a few pricings per process)."""
    key = (dialect, tuple(sorted(pricing.prices.items())), pricing.default)
    column = _COLUMNS.get(key)
    if column is None:
        if len(_COLUMNS) >= 32:
            _COLUMNS.clear()
        column = _COLUMNS[key] = _json_column(dialect, pricing)
    return column


def _with_odd_metadata(text: str, meta: str) -> str:
    """An event's JSON with metadata that only Python's lenient parser reads (NaN, lone
    surrogates), written with JSON's escapes."""
    doc = json.loads(text)
    try:
        stored = json.loads(meta)
    except ValueError:
        stored = None
    extra = doc["metadata"]
    doc["metadata"] = {**(stored if isinstance(stored, dict) else {}), **extra}
    return json.dumps(doc, separators=(",", ":"))


def _event_documents(docs: list[bytes], pricing: Pricing) -> list[bytes]:
    """Each event's JSON (UTF-8): as the database wrote it, or, after a prefix
    (``_json_column``), with the price of its meter put into its ``costUsdc`` (``text[:-2]``
    drops the closing ``"}``) and its odd metadata merged."""
    prices: dict[tuple[str, float], str] = {}  # most events of a run share meter and quantity
    firsts = bytes(map(itemgetter(0), docs))  # the first byte of each: one C loop, no slices
    i = firsts.find(b"[")
    while i != -1:
        raw = docs[i].decode()
        (meter, exact, odd), end = _DECODER.raw_decode(raw)
        text = raw[end:]
        if meter is not None:
            amount = float(exact)
            price = prices.get((meter, amount))
            if price is None:
                price = prices[meter, amount] = format_usdc(pricing.micros(meter, amount))
            text = f'{text[:-2]}{price}"}}'
        if odd is not None:
            text = _with_odd_metadata(text, odd)
        docs[i] = text.encode("utf-8", "backslashreplace")
        i = firsts.find(b"[", i + 1)
    return docs


def _cursor_after(db: Database, account_id: int, doc: bytes) -> str:
    """The cursor after the event whose JSON is ``doc``: its timestamp, and its ``seq`` looked
    up by id (an event's id and seq never change once stored)."""
    event = json.loads(doc)
    with db.read() as conn:
        seq = conn.execute(
            select(events.c.seq).where(
                events.c.account_id == account_id, events.c.id == event["id"]
            )
        ).scalar_one()
    return encode_cursor(event["timestamp"], seq)


def get_timeline(
    db: Database,
    pricing: Pricing,
    account_id: int,
    run_id: str,
    limit: int | None,
    cursor: str | None = None,
) -> bytes:
    """``GET /runs/{id}/timeline`` as JSON: the run flat at the top, then a page of its events
    in time order (``limit``, at most ``TIMELINE_MAX``), with ``nextCursor`` for the next
    page; the summary always covers the whole run."""
    page = min(limit or TIMELINE_MAX, TIMELINE_MAX)
    after = None if cursor is None else decode_cursor(cursor)
    row, customer_name, rows, (count, quantity, cost), micros = _read_run(
        db, pricing, account_id, run_id, page, after, [_document_column(db.dialect, pricing)]
    )
    more = len(rows) > page
    docs = _event_documents(list(rows[:page]), pricing)
    head = RunTimeline(
        run_id=row.id,
        customer_id=row.customer_id,
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name or "",
        status=RunStatus(row.status),
        events=[],
        summary=TimelineSummary(
            total_events=count,
            total_quantity=number_text(quantity),
            total_cost_units=number_text(cost),
            total_charged_usdc=format_usdc(micros),
        ),
        customer_name=customer_name,
        external_customer_id=customer_name,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_ms=clock.duration_ms(row.started_at, row.ended_at),
        error_message=row.error_message,
        error_code=row.error_code,
        correlation_id=row.correlation_id,
        parent_run_id=row.parent_run_id,
        metadata=row.meta,
        has_more=more,
        next_cursor=_cursor_after(db, account_id, docs[-1]) if more else None,
    )
    body = head.model_dump(mode="json", by_alias=True)
    del body["events"]
    try:
        head_json = pydantic_core.to_json(body)
    except pydantic_core.PydanticSerializationError:  # odd stored text: JSON's own escapes
        head_json = json.dumps(body, separators=(",", ":"), default=str).encode()
    # one join of the whole page (3.6 MB for 10,000 events), already UTF-8: every extra copy
    # of it costs time here and evicts caches for the requests that follow
    opening = head_json[:-1] + b',"events":['
    if docs:
        docs[0] = opening + docs[0]
        docs[-1] += b"]}"
    else:
        docs = [opening + b"]}"]
    return b",".join(docs)


def get_run(db: Database, pricing: Pricing, account_id: int, run_id: str) -> dict[str, Any]:
    """``GET /runs/{id}``: RunDetails, plus ``timeline`` and ``summary`` keys that the
    published core async client reads from this endpoint (contract §2.1.11)."""
    row, customer_name, rows, (count, quantity, cost), micros = _read_run(
        db, pricing, account_id, run_id, DETAILS_TIMELINE_LIMIT
    )
    details = RunDetails(
        id=row.id,
        customer_id=row.customer_id,
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name or "",
        status=RunStatus(row.status),
        totals=RunTotals(
            event_count=count,
            total_quantity=number_text(quantity),
            total_cost_units=number_text(cost),
        ),
        links=RunLinks(timeline=f"/v1/runs/{row.id}/timeline"),
        customer_name=customer_name,
        external_customer_id=customer_name,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration_ms=clock.duration_ms(row.started_at, row.ended_at),
        error_message=row.error_message,
        error_code=row.error_code,
        correlation_id=row.correlation_id,
        metadata=row.meta,
        parent_run_id=row.parent_run_id,
        external_run_id=row.external_run_id,
    )
    body = details.model_dump(mode="json", by_alias=True)
    body["totals"]["totalChargedUsdc"] = format_usdc(micros)
    body["timeline"] = _event_dicts(rows[:DETAILS_TIMELINE_LIMIT], pricing)
    body["summary"] = f"{count} events"
    return body
