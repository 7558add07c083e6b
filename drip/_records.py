"""The compact records the instrumentation buffers, and their encoding into ingest items.

A record is a plain tuple whose first element is its encoder; the delivery worker calls
``record[0](record, clock)`` to get the wire item as JSON text (the ``POST /v1/ingest`` shape,
see ``drip.models.IngestEvent`` & co.). Strings fixed by a decorator or a run are encoded once;
per record only numbers, ids and the timestamp are formatted. Tuples are the cheapest object to build on the caller's
thread and the smallest to keep (about 220 bytes for an event, ints included); all formatting
(ids, timestamps, hex) happens on the worker.

Layouts::

    fast    (FAST,          run_head, meter_tail, parent_seq, seq, t0, t1, span_id)
    event   (encode_event,  meter, run,         parent_seq, seq, t0, t1, quantity, error, span, metadata)
    usage   (encode_usage,  meter, customer_id, parent_seq, seq, t0, t1, quantity, error, span, metadata)
    manual  (encode_manual, run, parent_seq, seq, t, event_type, quantity, units, description, metadata, span)
    start   (encode_run_start, run)
    end     (encode_run_end, run, status, error_code, error_message, t)

and the three flat records of a web request's run (``REQUEST_*``, see "Request records" below)::

    (REQUEST_START, run_seq, customer_id, parts, external_run_id, correlation_id, t0, None)
    (REQUEST_EVENT, run_seq, parts, correlation_id, t, status_code, duration_us, span_id)
    (REQUEST_END,   run_seq, status, error_code, error_message, t, None, None)

``t0``/``t1``/``t`` are ``time.perf_counter_ns()`` values; the worker turns them into wall-clock
time with one offset per batch. ``span`` is an OpenTelemetry ``SpanContext`` or None.

The *fast* record is what a metered call inside a run makes on its common path (a fixed
quantity, no error, no ``current_event()``). It holds only ints, strings and None: the run's JSON
head (``Run._fast``, made once per run) and the meter's JSON tail with the quantity and static
metadata (``MeterSpec.fast_tail``, made once per decorator) instead of the ``Run``, the
``MeterSpec`` and the ``SpanContext``. The cyclic GC untracks such a tuple at the first young
collection it survives, so thousands of buffered records are not traversed again by every later
collection (they were: ~1,650 instructions per call). Its kind is the int ``FAST``; every other
record starts with its encoder function. ``encode`` handles both.

A lane keeps a fast record *flat*: its ``WIDTH`` elements are added with one ``extend`` (atomic
under the GIL), and the record tuple itself is freed at once. So a metered call leaves no new
GC-tracked object behind, and the cyclic GC's young collections (one per ~700 tracked objects
kept) do not run at all in a tight loop of metered calls. Any other record takes one element,
padded with ``WIDTH - 1`` Nones in the delivery buffer so that its length stays ``WIDTH`` times
records; ``unflatten`` reads either form back.

On the wire, a stretch of fast records becomes one ``events`` item (``encode_columns``: the run
heads and meter tails once, then a column of integers per field) once the server has said it
takes them; it stands for exactly the ``event`` items ``encode_fast`` writes (same ids, times
and durations), and ``drip.server.ingest_columns`` expands it back into them.

Event and usage ids are derived from a per-process sequence number: ``evt_`` + 12 hex digits of
the process start time (ms) + 10 random hex digits drawn per process (again in a ``fork()``
child) + 10 hex digits of the sequence. A nested call names its parent by sequence number, so an
id is only formatted when it is needed (by the worker, or by ``EventHandle.id``) and is the same
every time it is formatted.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from binascii import b2a_base64
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import TYPE_CHECKING, Any

from . import otel
from ._checks import ExternalId
from ._compiled import speedups
from ._forks import after_fork_in_child
from .models import pack_columns, packed_count, unpack_columns

if TYPE_CHECKING:
    from ._scopes import Run

__all__ = [
    "FAST", "PAD", "REQUEST_END", "REQUEST_EVENT", "REQUEST_START", "SEQ", "WIDTH", "Clock",
    "MeterSpec", "check_fork", "encode", "encode_requests", "event_id", "next_seq", "pack_flat",
    "request_parts", "run_head", "seq_run_id", "unflatten",
]  # fmt: skip

Record = tuple[Any, ...]


def _new_prefix() -> str:
    return f"{time.time_ns() // 1_000_000:012x}{random.SystemRandom().getrandbits(40):010x}"


_prefix = _new_prefix()
_prefix_pid = os.getpid()
#: the sequence numbers (thread-safe: ``itertools.count`` is atomic in CPython); the hot path
#: calls ``next(SEQ)``, cheaper than the bound ``__next__`` (a slot wrapper)
SEQ = itertools.count(1)
#: the next sequence number
next_seq = SEQ.__next__


@after_fork_in_child
def _after_fork_in_child() -> None:
    global _prefix, _prefix_pid
    _prefix = _new_prefix()
    _prefix_pid = os.getpid()


def check_fork() -> None:
    """Draw the id prefix again in a process forked unseen by the at-fork hooks (uWSGI's
    workers): two workers would make the same ids, and the server would take one's records
    for the other's duplicates. Called where ids are formatted (once per worker batch)."""
    if _prefix_pid != os.getpid():
        _after_fork_in_child()


_SEQ_MASK = (1 << 40) - 1


def event_id(seq: int, usage: bool = False) -> str:
    """The id of the event (or usage record) with this sequence number, in this process (no
    ``check_fork``: ``Run.event`` makes one per call; uWSGI's workers reset at their fork)."""
    return f"{'use' if usage else 'evt'}_{_prefix}{seq & _SEQ_MASK:010x}"


#: JSON for user-given values: ASCII only (so a part's length is its size in bytes), NaN and
#: infinity refused (an ``Exception`` for that one record, not a poisoned batch)
dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode


def _number(value: float) -> str:
    return int.__repr__(value) if isinstance(value, int) else float.__repr__(value)


class MeterSpec:
    """What a ``@metered`` decorator fixes once: meter, event type, units, static metadata.

    The JSON of these never changes, so it is encoded here, once.
    """

    __slots__ = ("event_head", "event_type", "metadata", "metadata_json", "meter", "units",
                 "usage_head")  # fmt: skip

    def __init__(
        self, meter: str, event_type: str, units: str | None, metadata: dict[str, Any] | None
    ) -> None:
        self.meter = meter
        self.event_type = event_type
        self.units = units
        self.metadata = metadata
        units_json = "" if units is None else f',"units":{dumps(units)}'
        self.event_head = f',"eventType":{dumps(event_type)},"meter":{dumps(meter)}{units_json}'
        self.usage_head = f',"usageType":{dumps(meter)}{units_json}'
        self.metadata_json = dumps(metadata) if metadata else None

    def fast_tail(self, quantity: float | None) -> str:
        """The JSON of a fast record's fixed fields: event type, meter, units, quantity and
        static metadata (see the module doc)."""
        tail = self.event_head
        if quantity is not None:
            tail += f',"quantity":{_number(quantity)}'
        if self.metadata_json is not None:
            tail += f',"metadata":{self.metadata_json}'
        return tail


class Clock:
    """perf_counter_ns -> ISO-8601 UTC text, with the second's prefix cached."""

    __slots__ = ("_offset", "_sec", "_text")

    def __init__(self) -> None:
        self._sec = -1
        self._text = ""
        self._offset = 0
        self.sync()

    def sync(self) -> None:
        """Re-read the wall clock (the worker does it once per batch)."""
        self._offset = time.time_ns() - time.perf_counter_ns()

    def iso(self, t: int) -> str:
        sec, ns = divmod(t + self._offset, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._text}.{ns // 1000:06d}Z"


def run_head(run: Run) -> str:
    """``"runId":...`` plus the run's correlation id, as JSON; computed once per run."""
    head = run._json
    if head is None:
        head = f'"runId":{dumps(run.id)}'
        if run.correlation_id is not None:
            head += f',"correlationId":{dumps(run.correlation_id)}'
        run._json = head
    return head


def _optional(pairs: tuple[tuple[str, Any], ...]) -> str:
    return "".join(f',"{key}":{dumps(value)}' for key, value in pairs if value is not None)


def encode_event(rec: Record, clock: Clock) -> str:
    _, m, run, parent, seq, t0, t1, quantity, error, span, metadata = rec
    head = run._json or run_head(run)
    if quantity is None:
        q = ""
    elif quantity.__class__ is int:
        q = f',"quantity":{quantity}'
    else:
        q = f',"quantity":{_number(quantity)}'
    if parent is None and span is None and error is None and not metadata and not run.remote_parent:
        # the common case in one f-string, the clock inlined: this runs for every event
        sec, ns = divmod(t0 + clock._offset, 1_000_000_000)
        if sec != clock._sec:
            clock.iso(t0)
        us = (t1 - t0 + 500) // 1000
        return (
            f'{{"type":"event","id":"evt_{_prefix}{seq & _SEQ_MASK:010x}",{head}{m.event_head}{q}'
            f',"timestamp":"{clock._text}.{ns // 1000:06d}Z"'
            f',"durationMs":{us // 1000}.{us % 1000:03d},"outcome":"ok"}}'
        )
    text: str = f'{{"type":"event","id":"evt_{_prefix}{seq & _SEQ_MASK:010x}",{head}'
    text += m.event_head + q
    if parent is not None:
        text += f',"parentEventId":"evt_{_prefix}{parent & _SEQ_MASK:010x}"'
    elif run.remote_parent:  # a top-level event of a run continued from another process
        text += f',"parentEventId":{dumps(run.remote_parent)}'
    if span is not None and span.is_valid:
        text += f',"spanId":"{span.span_id:016x}"'
    us = (t1 - t0 + 500) // 1000
    text += f',"timestamp":"{clock.iso(t0)}","durationMs":{us // 1000}.{us % 1000:03d}'
    text += ',"outcome":"ok"' if error is None else f',"outcome":"error","errorType":{dumps(error)}'
    if metadata:
        meta = m.metadata_json if metadata is m.metadata else dumps(metadata)
        text += f',"metadata":{meta}'
    return text + "}"


#: the kind of a fast record (its first element); every other record starts with its encoder
FAST = 0


#: how many elements a fast record has, and a padded record takes, in a lane
WIDTH = 8
#: what follows any other record in the delivery buffer
PAD = (None,) * (WIDTH - 1)


def unflatten(elements: Iterable[Any]) -> Iterator[Any]:
    """The records of a lane's elements (flat records, padded or bare other records)."""
    it = iter(elements)
    for x in it:
        if x.__class__ is int:  # the kind of a flat record (fast, request)
            yield (x, *itertools.islice(it, WIDTH - 1))
        elif x is not None:  # None is padding: no record starts with it
            yield x


def encode_fast(rec: Record, clock: Clock) -> str:
    """A fast record (see the module doc) as its JSON item."""
    _, head, tail, parent, seq, t0, t1, span_id = rec
    sec, ns = divmod(t0 + clock._offset, 1_000_000_000)
    if sec != clock._sec:
        clock.iso(t0)
    us = (t1 - t0 + 500) // 1000
    text = f'{{"type":"event","id":"evt_{_prefix}{seq & _SEQ_MASK:010x}",{head}{tail}'
    if parent is not None:
        text += f',"parentEventId":"evt_{_prefix}{parent & _SEQ_MASK:010x}"'
    if span_id is not None:
        text += f',"spanId":"{span_id:016x}"'
    return (
        f'{text},"timestamp":"{clock._text}.{ns // 1000:06d}Z"'
        f',"durationMs":{us // 1000}.{us % 1000:03d},"outcome":"ok"}}'
    )


def _index(values: list[str]) -> tuple[list[str], list[int] | None]:
    """The distinct values in order of first use, and each value's position among them (None
    when there is one): C-level passes, no Python step per value."""
    if values.count(values[0]) == len(values):  # the usual: one run, one meter (identity)
        return values[:1], None
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return distinct, None
    return distinct, list(
        map(dict(zip(distinct, range(len(distinct)), strict=True)).__getitem__, values)
    )


def encode_columns(flat: list[Any], clock: Clock, packed: bool = False) -> str:
    """The fast records held flat in ``flat`` (``WIDTH`` elements each, nothing else) as one
    ``events`` item (``drip.models.IngestEvents``): the run heads and meter tails once, then a
    column per field. Every pass is a slice or a C-level ``map`` / ``json`` call; it stands for
    the same ``event`` items ``encode_fast`` writes (same ids, times and durations).

    ``packed`` (once the server has said it takes it): the sequence numbers and the start and
    end times go as they are, as int64 in one base64 string (``drip.models.pack_columns``), not
    as JSON lists of the ids' numbers, the offsets and the durations, which had to be computed
    and written number by number (about three quarters of this function's CPU)."""
    heads, run = _index(flat[1::WIDTH])
    tails, meter = _index(flat[2::WIDTH])
    parent = flat[3::WIDTH]
    span = flat[7::WIDTH]
    if packed:
        base = -clock._offset if clock._offset < 0 else 0  # ``at`` is never negative
        if any(map(_SEQ_MASK.__lt__, filter(None, parent))):
            parent = [None if p is None else p & _SEQ_MASK for p in parent]
    else:
        seq = flat[4::WIDTH]
        t0 = flat[5::WIDTH]
        base = min(t0)
        if max(seq) > _SEQ_MASK or any(map(_SEQ_MASK.__lt__, filter(None, parent))):
            seq = [s & _SEQ_MASK for s in seq]
            parent = [None if p is None else p & _SEQ_MASK for p in parent]
    text = (
        f'{{"type":"events","idPrefix":"evt_{_prefix}","runs":[{{{"},{".join(heads)}}}]'
        f',"meters":[{{{"},{".join(t[1:] for t in tails)}}}],"at":{base + clock._offset}'
    )
    if run is not None:
        text += f',"run":{_ints(run)}'
    if meter is not None:
        text += f',"meter":{_ints(meter)}'
    if packed:
        text += f',"packed":"{pack_flat(flat, base)}"'
    else:
        text += f',"seq":{_ints(seq)}'
    if parent.count(None) != len(parent):
        text += f',"parent":{dumps(parent)}'
    if not packed:
        text += f',"t":{_ints(list(map(int.__sub__, t0, repeat(base))))}'
        text += f',"d":{_ints(list(map(int.__sub__, flat[6::WIDTH], t0)))}'
    if span.count(None) != len(span):
        text += f',"span":{dumps(span)}'
    return text + "}"


def pack_flat(flat: list[Any], base: int = 0) -> str:
    """``drip.models.pack_columns`` of the fast records held flat in ``flat``: their sequence
    numbers, and their start and end times plus ``base`` (compiled when ``drip._speedups`` is
    there: one pass over the list, no slices)."""
    if speedups is not None:
        raw = speedups.pack(flat, WIDTH, 4, 5, 6, base)
        return b2a_base64(raw, newline=False).decode("ascii")
    seq, t0, t1 = flat[4::WIDTH], flat[5::WIDTH], flat[6::WIDTH]
    if base:
        t0, t1 = [t + base for t in t0], [t + base for t in t1]
    return pack_columns(seq, t0, t1)


#: the ``events`` item's columns that hold a value per event
_PER_EVENT = ("run", "meter", "seq", "parent", "t", "d", "span")


def item_is_columns(item: Any) -> bool:
    """Whether a decoded ingest item is an ``events`` item."""
    return isinstance(item, dict) and item.get("type") == "events"


def columns_count(item: bytes) -> int:
    """The records an encoded item stands for: the events of an ``events`` item, else 1."""
    if not item.startswith(b'{"type":"events"'):
        return 1
    obj = json.loads(item)
    seq, packed = obj.get("seq"), obj.get("packed")
    if isinstance(packed, str) and packed and seq is None:
        return packed_count(packed)
    return len(seq) if isinstance(seq, list) and seq else 1


def split_columns(item: bytes) -> list[bytes]:
    """An ``events`` item cut into two by its columns (a refused batch is halved down to the
    single record); any other item as it is."""
    obj = json.loads(item) if item.startswith(b'{"type":"events"') else None
    if not isinstance(obj, dict):
        return [item]
    packed = obj.get("packed")
    columns: tuple[list[int], list[int], list[int]] | None = None
    if isinstance(packed, str) and obj.get("seq") is None:
        try:
            columns = unpack_columns(packed)
        except ValueError:  # the server says why, for the whole item
            return [item]
    seq = columns[0] if columns is not None else obj.get("seq")
    if not isinstance(seq, list) or len(seq) < 2:
        return [item]
    mid = len(seq) // 2
    halves = []
    for part in (slice(0, mid), slice(mid, None)):
        half = dict(obj)
        for key in _PER_EVENT:
            if isinstance(half.get(key), list):
                half[key] = half[key][part]
        if columns is not None:
            half["packed"] = pack_columns(*(column[part] for column in columns))
        halves.append(dumps(half).encode())
    return halves


def _ints(values: list[int]) -> str:
    """A list of ints as JSON (``repr`` is the fastest writer; JSON takes its spaces)."""
    return repr(values)


def encode(rec: Record, clock: Clock) -> str:
    """Any record as its JSON item."""
    kind = rec[0]
    if kind is FAST:
        return encode_fast(rec, clock)
    if kind.__class__ is int:
        if speedups is not None:  # the same JSON, compiled; None: a shape it leaves to Python
            compiled: str | None = speedups.encode_request(
                rec, _prefix, clock._offset, _SEQ_MASK, dumps, ExternalId
            )
            if compiled is not None:
                return compiled
        return _REQUEST_ENCODERS[kind](rec, clock)
    text: str = kind(rec, clock)
    return text


def encode_requests(flat: list[Any], clock: Clock) -> list[str] | None:
    """The JSON items of a slice that holds web request records only (a web app's usual
    slice), in one compiled pass; None without ``drip._speedups``, or when a record of the
    slice is of another kind or shape (the caller then takes them one by one)."""
    if speedups is None:
        return None
    texts: list[str] | None = speedups.encode_requests(
        flat, _prefix, clock._offset, _SEQ_MASK, dumps, ExternalId
    )
    return texts


def _customer(customer_id: str | None) -> str:
    """The customer field of a record: an ``ExternalId`` is sent as such, for the server to
    resolve (or create)."""
    if type(customer_id) is ExternalId:
        return f'"externalCustomerId":{dumps(customer_id)}'
    return f'"customerId":{dumps(customer_id)}'


def encode_usage(rec: Record, clock: Clock) -> str:
    """A metered call outside any run: a usage record; call details go in ``metadata.drip``."""
    _, m, customer_id, parent, seq, t0, t1, quantity, error, span, metadata = rec
    details: dict[str, Any] = {"durationMs": round((t1 - t0) / 1e6, 3)}
    details["outcome"] = "ok" if error is None else "error"
    if error is not None:
        details["errorType"] = error
    if m.event_type != m.meter:
        details["eventType"] = m.event_type
    if parent is not None:
        details["parentId"] = event_id(parent, usage=True)
    valid = span is not None and span.is_valid
    if valid:
        details["spanId"] = f"{span.span_id:016x}"
    text = f'{{"type":"usage","id":"{event_id(seq, usage=True)}"'
    text += f",{_customer(customer_id)}{m.usage_head}"
    text += f',"quantity":{0 if quantity is None else _number(quantity)}'
    if valid:
        text += f',"correlationId":"{span.trace_id:032x}"'
    meta = {**metadata, "drip": details} if metadata else {"drip": details}
    return text + f',"timestamp":"{clock.iso(t0)}","metadata":{dumps(meta)}}}'


def encode_manual(rec: Record, clock: Clock) -> str:
    """An event recorded with ``run.event(...)``."""
    _, run, parent, seq, t, event_type, quantity, units, description, metadata, span = rec
    text = f'{{"type":"event","id":"{event_id(seq)}",{run_head(run)}'
    text += f',"eventType":{dumps(event_type)}'
    if quantity is not None:
        text += f',"quantity":{_number(quantity)}'
    text += _optional(
        (
            ("units", units),
            ("description", description),
            ("parentEventId", run.remote_parent if parent is None else event_id(parent)),
            ("spanId", otel.span_id_hex(span)),
            ("metadata", metadata or None),
        )
    )
    return text + f',"timestamp":"{clock.iso(t)}"}}'


def encode_run_start(rec: Record, clock: Clock) -> str:
    run: Run = rec[1]
    text = f'{{"type":"run.start","id":{dumps(run.id)},{_customer(run.customer_id)}'
    text += f',"workflow":{dumps(run.workflow)}'
    text += _optional(
        (
            ("parentRunId", run.parent_run_id),
            ("externalRunId", run.external_run_id),
            ("correlationId", run.correlation_id),
            ("metadata", run.metadata or None),
        )
    )
    return text + f',"startedAt":"{clock.iso(run._t0)}"}}'


def encode_run_end(rec: Record, clock: Clock) -> str:
    _, run, status, code, message, t = rec
    text = f'{{"type":"run.end","runId":{dumps(run.id)},"status":"{status}"'
    text += _optional((("errorCode", code), ("errorMessage", message)))
    return text + f',"endedAt":"{clock.iso(t)}"}}'


# -- Request records ---------------------------------------------------------------------------
#
# A web request is a run with one event (``integrations/_web.py``). Most of the time nothing in
# the handler refers to that run, and then its start, event and end are recorded together when
# the request ends, as three *flat* records of ints, strings and None (kinds ``REQUEST_*``),
# added to the lane with one ``extend``: no ``Run`` is kept alive by the buffer and no buffered
# object is tracked by the cyclic GC (which walked every request's ``Run`` again and again).
# The worker encodes them into the same three items ``run.start`` / ``event`` / ``run.end``
# that a ``Run`` gives (the server cannot tell the difference). What is fixed per route (the
# workflow, the event's type and quantity, the route and method of its metadata) is JSON made
# once (``request_parts``); per request only ids, numbers and timestamps are formatted, on the
# worker. The run's id comes from a sequence number like an event's (``seq_run_id``), so the
# three records name it without sharing an object; its one event takes the same number.

REQUEST_START = 1
REQUEST_EVENT = 2
REQUEST_END = 3


def seq_run_id(seq: int) -> str:
    """The id of a run numbered ``seq`` (a deferred run's: ``drip._scopes.DeferredRun``)."""
    check_fork()
    return f"run_{_prefix}{seq & _SEQ_MASK:010x}"


def request_parts(
    workflow: str, meter: str, quantity: float | None, route: str, method: str, incomplete: bool
) -> tuple[str, str, str, str]:
    """The JSON of a request run's fixed fields: the run's ``"workflow"``, and its event's type
    and quantity, metadata route and method, and metadata end (``"incomplete": true`` when
    the client left before the last body chunk)."""
    head = f',"eventType":{dumps(meter)},"meter":{dumps(meter)}'  # counts for the meter
    if quantity is not None:
        head += f',"quantity":{_number(quantity)}'
    middle = f',"route":{dumps(route)},"method":{dumps(method)},"duration_ms":'
    end = ',"incomplete":true}' if incomplete else "}"
    return f',"workflow":{dumps(workflow)}', head, middle, end


def _run_head(seq: int, correlation_id: str | None) -> str:
    head = f'"runId":"{seq_run_id(seq)}"'
    return head if correlation_id is None else f'{head},"correlationId":{dumps(correlation_id)}'


def encode_request_start(rec: Record, clock: Clock) -> str:
    _, seq, customer_id, parts, external_run_id, correlation_id, t0, _ = rec
    text: str = f'{{"type":"run.start","id":"{seq_run_id(seq)}"'
    text += f",{_customer(customer_id)}{parts[0]}"
    if external_run_id is not None:
        text += f',"externalRunId":{dumps(external_run_id)}'
    if correlation_id is not None:
        text += f',"correlationId":{dumps(correlation_id)}'
    return text + f',"startedAt":"{clock.iso(t0)}"}}'


def encode_request_event(rec: Record, clock: Clock) -> str:
    _, seq, parts, correlation_id, t, status, duration_us, span_id = rec
    _, head, middle, end = parts
    # the event's id takes the run's number: the run took it from ``SEQ``, so no event has it
    text = f'{{"type":"event","id":"{event_id(seq)}",{_run_head(seq, correlation_id)}{head}'
    if span_id is not None:
        text += f',"spanId":"{span_id:016x}"'
    code = "null" if status is None else int.__repr__(status)
    duration = float.__repr__(duration_us / 1000)
    return (
        text
        + f',"metadata":{{"status_code":{code}{middle}{duration}{end},"timestamp":"{clock.iso(t)}"}}'
    )


def encode_request_end(rec: Record, clock: Clock) -> str:
    _, seq, status, code, message, t, _, _ = rec
    text = f'{{"type":"run.end","runId":"{seq_run_id(seq)}","status":"{status}"'
    text += _optional((("errorCode", code), ("errorMessage", message)))
    return text + f',"endedAt":"{clock.iso(t)}"}}'


_REQUEST_ENCODERS = {
    REQUEST_START: encode_request_start,
    REQUEST_EVENT: encode_request_event,
    REQUEST_END: encode_request_end,
}


#: what each kind of record is, for messages about it
KINDS: dict[Any, str] = {
    REQUEST_START: "run.start",
    REQUEST_EVENT: "event",
    REQUEST_END: "run.end",
    FAST: "event",
    encode_event: "event",
    encode_usage: "usage",
    encode_manual: "event",
    encode_run_start: "run.start",
    encode_run_end: "run.end",
}
