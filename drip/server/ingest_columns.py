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

import time
from itertools import compress, repeat
from operator import add, floordiv, is_not, itemgetter, mod, truediv
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from typing_extensions import NotRequired, TypedDict

from drip._checks import MAX_NAME_LENGTH, MAX_QUANTITY, metadata_problem

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
    seq: Annotated[list[_Seq], Field(min_length=1)]
    parent: NotRequired[list[_Seq | None] | None]
    t: list[_Nanos]
    d: list[_Nanos]
    span: NotRequired[list[_Span | None] | None]


#: the fast schemas of the parts, by name (for the test that holds them to the models)
COLUMN_PARTS: dict[str, type[Any]] = {"events": Columns, "runs": _Run, "meters": _Meter}

#: an expanded event's keys, in the fast ``event`` schema's order; its values are gathered into
#: a tuple in this order, and each shape of event takes the keys it has
_KEYS = (
    "type", "id", "run_id", "event_type", "meter", "quantity", "units", "parent_event_id",
    "correlation_id", "span_id", "timestamp", "duration_ms", "outcome", "metadata",
)  # fmt: skip
_RUN_KEYS = ("run_id", "correlation_id")
_METER_KEYS = ("event_type", "meter", "quantity", "units", "metadata")
#: positions in ``_KEYS`` of the group values, in the order a group's tuple holds them
_GROUP_AT = (2, 8, 3, 4, 5, 6, 13)
_PARENT, _SPAN = 7, 9
_US = 1_000_000


def event_count(item: Any) -> int:
    """How many events an ``events`` item holds (for its results when it is rejected): the
    length of its ``seq`` column, 1 when that is not a list."""
    seq = item.get("seq") if isinstance(item, dict) else None
    return len(seq) if isinstance(seq, list) and seq else 1


def _problem(col: Columns) -> str | None:
    """What breaks the column rules the schema cannot state, or None."""
    n = len(col["seq"])
    for name in ("t", "d", "run", "meter", "parent", "span"):
        values = col.get(name)
        if values is not None and len(values) != n:
            return f"{name}: {len(values)} values for {n} events"
    for name, groups in (("run", col["runs"]), ("meter", col["meters"])):
        index = col.get(name)
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


def _seconds(sec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def expand(col: Columns) -> list[dict[str, Any]] | str:
    """The ``event`` item dicts a valid ``events`` item stands for, in order; or what breaks
    the column rules (the item is then rejected as a whole)."""
    problem = _problem(col)
    if problem is not None:
        return problem
    seq = col["seq"]
    n = len(seq)
    prefix = col["id_prefix"].replace("{", "{{").replace("}", "}}")
    ident = (prefix + "{:010x}").format
    ids = list(map(ident, seq))
    # the groups: each distinct (run, meter) pair's values, and each event's group
    runs = [tuple(map(r.get, _RUN_KEYS)) for r in col["runs"]]
    meters = [tuple(map(m.get, _METER_KEYS)) for m in col["meters"]]
    pairs = list(
        zip(col.get("run") or repeat(0, n), col.get("meter") or repeat(0, n), strict=False)
    )
    groups = {pair: runs[pair[0]] + meters[pair[1]] for pair in dict.fromkeys(pairs)}
    # times: one strftime per distinct second
    us = list(map(floordiv, map(add, col["t"], repeat(col["at"])), repeat(1000)))
    secs = list(map(floordiv, us, repeat(_US)))
    texts = {sec: _seconds(sec) for sec in set(secs)}
    stamps = map("{}.{:06d}Z".format, map(texts.__getitem__, secs), map(mod, us, repeat(_US)))
    micros = map(floordiv, map(add, col["d"], repeat(500)), repeat(1000))
    durations = map(truediv, micros, repeat(1000))
    parent = col.get("parent")
    parents: Any = repeat(None) if parent is None else [None if p is None else ident(p) for p in parent]
    span = col.get("span")
    if span is None:
        spans: Any = repeat(None)
    elif None in span:
        spans = [None if s is None else f"{s:016x}" for s in span]
    else:
        spans = list(map("{:016x}".format, span))
    # each event's values in ``_KEYS`` order except the group's (filled per shape below)
    own = list(zip(repeat("event"), ids, parents, spans, stamps, durations, repeat("ok")))
    group_of = list(map(groups.__getitem__, pairs))
    rows = list(map(add, own, group_of))  # (type, id, parent, span, ts, dur, ok, *group)
    # a shape: which keys an event has (a group's non-null values, a parent, a span)
    shapes = list(
        zip(
            map(id, group_of),
            map(is_not, parent or repeat(None, n), repeat(None)),
            map(is_not, span or repeat(None, n), repeat(None)),
            strict=True,
        )
    )
    at_of = dict(zip((0, 1, _PARENT, _SPAN, 10, 11, 12), range(7), strict=True))
    at_of.update((key_at, 7 + i) for i, key_at in enumerate(_GROUP_AT))
    distinct = dict.fromkeys(shapes)
    out: list[Any] = [None] * n if len(distinct) > 1 else []
    for shape in distinct:
        has_parent, has_span = shape[1], shape[2]
        group = group_of[shapes.index(shape)]
        keys = []
        positions = []
        for key_at, key in enumerate(_KEYS):
            at = at_of[key_at]
            if key_at == _PARENT:
                keep = has_parent
            elif key_at == _SPAN:
                keep = has_span
            elif at >= 7:
                keep = group[at - 7] is not None
            else:
                keep = True
            if keep:
                keys.append(key)
                positions.append(at)
        pick = itemgetter(*positions)
        keys_t = tuple(keys)
        if len(distinct) == 1:
            out = list(map(dict, map(zip, repeat(keys_t), map(pick, rows))))
            break
        where = list(compress(range(n), map(shape.__eq__, shapes)))
        made = map(dict, map(zip, repeat(keys_t), map(pick, map(rows.__getitem__, where))))
        list(map(out.__setitem__, where, made))
    return out
