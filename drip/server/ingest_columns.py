"""The ``events`` ingest item (``drip.models.IngestEvents``): many metered events in columns,
expanded into the same item dicts as the ``event`` items they stand for.

The SDK sends the metered calls of a flush this way: the strings a run's or a meter's events
share once, then per event only integers (sequence number, parent, time offset, duration, span
id). Parsing integer lists is a fraction of parsing an object per event, and the expansion runs
as C-level passes over the columns (``map`` over bound methods and ``operator`` functions), not
a Python step per event, so an event costs the server less than it does as an ``event`` item.

An expanded event is the dict the fast schema gives for the equivalent ``event`` item: the same
keys in the same order (the schema's), so storage cannot tell them apart and an event of the
usual shape still takes its short row. Its timestamp is written in the wire format
(``2025-01-01T00:00:00.000000Z``) and its ``durationMs`` is the microsecond-rounded duration, as
the SDK's ``event`` items have them, so the ids, times and durations are the same byte for byte.

The rules are the ``event`` item's (``drip._checks`` through the same field types), plus the
column rules the schema cannot state: every column as long as ``seq``, ``run`` / ``meter``
indexes within their lists (or left out when the list has one entry), metadata within the
limits. An item that breaks one is rejected as a whole, with one result per event it holds so
the answer still has a result per event; the batch's other items are not affected.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from itertools import compress, repeat
from operator import add, floordiv, is_not, mod, sub, truediv
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from typing_extensions import NotRequired, TypedDict

from drip._checks import MAX_NAME_LENGTH, MAX_QUANTITY, metadata_problem
from drip.models import packed_count, unpack_columns

__all__ = ["COLUMN_PARTS", "Columns", "event_count", "expand"]

_CONFIG = ConfigDict(
    alias_generator=to_camel, populate_by_name=True, extra="ignore", cache_strings="keys"
)
_Name = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH, pattern=r"^[!-~]")]
_Quantity = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_QUANTITY)]
_Seq = Annotated[int, Field(strict=True, ge=0, lt=1 << 40)]
_Nanos = Annotated[int, Field(strict=True, ge=0, le=10**18)]
_Index = Annotated[int, Field(strict=True, ge=0)]
_Span = Annotated[int, Field(strict=True, ge=0, lt=1 << 64)]


class _Run(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    run_id: _Name
    correlation_id: NotRequired[str | None]


class _Meter(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    event_type: _Name
    meter: NotRequired[str | None]
    quantity: NotRequired[_Quantity | None]
    units: NotRequired[str | None]
    metadata: NotRequired[dict[str, Any] | None]


class Columns(TypedDict):
    """The ``events`` item as the fast schema gives it (snake_case keys)."""

    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["events"]
    id_prefix: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH - 10, pattern=r"^[!-~]")
    ]
    runs: Annotated[list[_Run], Field(min_length=1)]
    meters: Annotated[list[_Meter], Field(min_length=1)]
    at: Annotated[int, Field(strict=True, ge=0, le=4 * 10**18)]
    run: NotRequired[list[_Index] | None]
    meter: NotRequired[list[_Index] | None]
    seq: NotRequired[Annotated[list[_Seq], Field(min_length=1)] | None]
    parent: NotRequired[list[_Seq | None] | None]
    t: NotRequired[list[_Nanos] | None]
    d: NotRequired[list[_Nanos] | None]
    span: NotRequired[list[_Span | None] | None]
    packed: NotRequired[Annotated[str, StringConstraints(min_length=1)] | None]


#: the fast schemas of the parts, by name (for the test that holds them to the models)
COLUMN_PARTS: dict[str, type[Any]] = {"events": Columns, "runs": _Run, "meters": _Meter}

#: an expanded event's keys, in the fast ``event`` schema's order, and where each value comes
#: from: a parameter of the maker (``i`` id, ``p`` parent id, ``s`` span id, ``ts`` timestamp,
#: ``d`` duration) or the event's group ``g`` (its run's and meter's values)
_FIELDS = (
    ("type", "'event'"), ("id", "i"), ("run_id", "g[0]"), ("event_type", "g[2]"),
    ("meter", "g[3]"), ("quantity", "g[4]"), ("units", "g[5]"), ("parent_event_id", "p"),
    ("correlation_id", "g[1]"), ("span_id", "s"), ("timestamp", "ts"), ("duration_ms", "d"),
    ("outcome", "'ok'"), ("metadata", "g[6]"),
)  # fmt: skip
_RUN_KEYS = ("run_id", "correlation_id")
_METER_KEYS = ("event_type", "meter", "quantity", "units", "metadata")
_US = 1_000_000
_MAX_NANOS = 10**18


@functools.cache
def _maker(present: frozenset[str]) -> Callable[..., dict[str, Any]]:
    """A function that makes the dict of an event with these keys, from ``(i, g, ts, d, p, s)``.

    Written as one dict display and compiled once per set of keys (as ``collections.namedtuple``
    does): half the CPU of ``dict(zip(keys, values))``. The source holds only the names above."""
    pairs = ", ".join(f"{key!r}: {value}" for key, value in _FIELDS if key in present)
    namespace: dict[str, Any] = {}
    exec(f"def make(i, g, ts, d, p, s):\n    return {{{pairs}}}", namespace)
    maker: Callable[..., dict[str, Any]] = namespace["make"]
    return maker


def event_count(item: Any) -> int:
    """How many events an ``events`` item holds (for its results when it is rejected): the
    length of its ``seq`` column (or of its ``packed`` text), 1 when there is neither."""
    if not isinstance(item, dict):
        return 1
    seq, packed = item.get("seq"), item.get("packed")
    if isinstance(packed, str) and packed and seq is None:
        return packed_count(packed)
    return len(seq) if isinstance(seq, list) and seq else 1


def _unpack(col: Columns) -> str | None:
    """Put a ``packed`` item's ``seq``, ``t`` and ``d`` columns in place (checked as the
    schema checks them), or say what is wrong with its form."""
    packed = col.get("packed")
    given = [name for name in ("seq", "t", "d") if col.get(name) is not None]
    if packed is None:
        if len(given) != 3:
            return "seq, t and d (or packed) are required"
        return None
    if given:
        return f"packed stands for seq, t and d: {', '.join(given)} given too"
    try:
        seq, starts, ends = unpack_columns(packed)
    except ValueError as exc:
        return f"packed: {exc}"
    durations = list(map(sub, ends, starts))
    for name, values in (("t", starts), ("d", durations)):
        if min(values) < 0 or max(values) > _MAX_NANOS:
            return f"packed: a {name} value beyond 0 .. {_MAX_NANOS}"
    col["seq"], col["t"], col["d"] = seq, starts, durations
    return None


def _problem(col: Columns) -> str | None:
    """What breaks the column rules the schema cannot state, or None."""
    problem = _unpack(col)
    if problem is not None:
        return problem
    n = len(col["seq"] or ())
    for name in ("t", "d", "run", "meter", "parent", "span"):
        values: list[Any] | None = col.get(name)  # type: ignore[assignment]
        if values is not None and len(values) != n:
            return f"{name}: {len(values)} values for {n} events"
    for name, groups in (("run", col["runs"]), ("meter", col["meters"])):
        index: list[int] | None = col.get(name)  # type: ignore[assignment]
        if index is None:
            if len(groups) != 1:
                return f"{name}: required when {name}s holds more than one entry"
        elif max(index) >= len(groups):
            return f"{name}: an index beyond {name}s ({len(groups)} entries)"
    for i, meter in enumerate(col["meters"]):
        meta = meter.get("metadata")
        problem = None if meta is None else metadata_problem(meta)
        if problem is not None:
            return f"meters[{i}].metadata {problem}"
    return None


def expand(col: Columns) -> list[dict[str, Any]] | str:
    """The ``event`` item dicts a valid ``events`` item stands for, in order; or what breaks
    the column rules (the item is then rejected as a whole)."""
    problem = _problem(col)
    if problem is not None:
        return problem
    seq, t, d = col["seq"], col["t"], col["d"]
    assert seq is not None and t is not None and d is not None  # _problem checked them
    n = len(seq)
    ident = (col["id_prefix"].replace("%", "%%") + "%010x").__mod__
    ids = list(map(ident, seq))
    # the groups: each distinct (run, meter) pair's values, and the keys its events have
    runs = [tuple(map(r.get, _RUN_KEYS)) for r in col["runs"]]
    meters = [tuple(map(m.get, _METER_KEYS)) for m in col["meters"]]
    run_at, meter_at = col.get("run") or repeat(0, n), col.get("meter") or repeat(0, n)
    pairs = list(zip(run_at, meter_at, strict=True))
    groups = {}
    shapes = {}
    for pair in dict.fromkeys(pairs):
        run, meter = runs[pair[0]], meters[pair[1]]
        group = groups[pair] = (run[0], run[1], *meter)
        given = dict(zip(("run_id", "correlation_id", *_METER_KEYS), group, strict=True))
        shapes[pair] = frozenset(key for key, value in given.items() if value is not None)
    group_of = map(groups.__getitem__, pairs)
    # times: one strftime per distinct second, the rest with C-level passes
    us = list(map(floordiv, map(add, t, repeat(col["at"])), repeat(1000)))
    secs = list(map(floordiv, us, repeat(_US)))
    texts = {sec: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) for sec in set(secs)}
    stamps = map(
        mod,
        repeat("%s.%06dZ"),
        zip(map(texts.__getitem__, secs), map(mod, us, repeat(_US)), strict=True),
    )
    durations = map(truediv, map(floordiv, map(add, d, repeat(500)), repeat(1000)), repeat(1000))
    parent, span = col.get("parent"), col.get("span")
    parents: Any = (
        repeat(None) if parent is None else [None if p is None else ident(p) for p in parent]
    )
    if span is None:
        spans: Any = repeat(None)
    elif None in span:
        spans = [None if s is None else f"{s:016x}" for s in span]
    else:
        spans = list(map("%016x".__mod__, span))
    # which keys each event has: its group's, and a parent id and a span id where given
    extra = {"parent_event_id"} if parent is not None else set()
    if span is not None:
        extra.add("span_id")
    if (parent is None or None not in parent) and (span is None or None not in span):
        if len(set(shapes.values())) == 1:  # the usual batch: one maker for every event
            make = _maker(next(iter(shapes.values())) | _BASE | extra)
            return list(map(make, ids, group_of, stamps, durations, parents, spans))
        per_event = list(map(shapes.__getitem__, pairs))
    else:
        has_parent = map(is_not, parent or repeat(None), repeat(None))
        has_span = map(is_not, span or repeat(None), repeat(None))
        per_event = [
            shape | ({"parent_event_id"} if hp else _NONE) | ({"span_id"} if hs else _NONE)
            for shape, hp, hs in zip(
                map(shapes.__getitem__, pairs), has_parent, has_span, strict=False
            )
        ]
        extra = set()
    rows = list(zip(ids, group_of, stamps, durations, parents, spans, strict=False))
    out: list[Any] = [None] * n
    for shape in dict.fromkeys(per_event):
        make = _maker(shape | _BASE | extra)
        where = list(compress(range(n), map(shape.__eq__, per_event)))
        made = map(make, *zip(*map(rows.__getitem__, where), strict=True))
        list(map(out.__setitem__, where, made))
    return out


#: the keys every expanded event has
_BASE = frozenset({"type", "id", "timestamp", "duration_ms", "outcome"})
_NONE: frozenset[str] = frozenset()
