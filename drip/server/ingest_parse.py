"""Validating a ``POST /v1/ingest`` body into plain dicts, one per item.

The wire models (``drip.models.IngestRunStart`` & co.) are the rule. Validating 2,000 items
into model instances costs more than storing them, so a clean body goes through a faster twin
first: ``TypedDict`` schemas with the same fields, aliases and config, that produce dicts
(snake_case keys, like a model's ``__dict__``) and run no Python validator. The twin is
*stricter*, never looser, so whatever it accepts the models accept with the same values:

* names (ids, event types, ...) must also start with a printable ASCII character that is not a
  space, which makes the models' "not blank" check (a Python function) unnecessary;
* quantities must be JSON numbers (strict: no numeric strings, no booleans) and finite, the
  models' two Python checks done in the core;
* timestamps must already be in the wire format (``2025-01-01T00:00:00.000000Z``, what the SDK
  sends), so the apply loop need not check or convert them.

A body the twin refuses is parsed again item by item with the models, whose errors are the ones
reported (anything the models accept that the twin does not, such as a name starting with a
space, is still accepted this way, only slower). ``tests/server/test_ingest_parse.py`` holds the
twin to the models' field lists.

Poison isolation: nothing in one item can fail the batch. The rules are ``drip._checks``' (the
SDK checks the same before it queues): a quantity must be finite, ``>= 0`` and at most
``MAX_QUANTITY``; metadata must fit the size and depth limits; no string anywhere in an item
may hold a lone surrogate (what bytes that are not UTF-8 decode to) or NUL. A body with such
escapes (``\\udcff``, ``\\u0000``) or bytes skips the twin, and the item that holds one is
rejected alone (``INVALID_TEXT``), with the field named; the rest of the batch is stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel
from typing_extensions import NotRequired, TypedDict

from drip._checks import MAX_NAME_LENGTH, MAX_QUANTITY, find_bad_text, metadata_problem
from drip.models import IngestItem, RunStatus

from .errors import ApiError, describe_validation_error
from .http import decode
from .ingest_columns import Columns, event_count, expand

__all__ = ["FAST_ITEMS", "MAX_ITEMS", "Item", "Rejected", "parse_batch"]

#: most items in one request (413 beyond); the SDK sends up to 5,000 (``max_batch_items``)
MAX_ITEMS = 20_000

#: one item as a dict: ``type`` plus the model's fields that were given (snake_case)
Item = dict[str, Any]

_CONFIG = ConfigDict(
    alias_generator=to_camel, populate_by_name=True, extra="ignore", cache_strings="keys"
)
_Name = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH, pattern=r"^[!-~]")]
_Quantity = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_QUANTITY)]
#: the wire's own timestamp format (what ``clock.is_canonical`` takes as is), ASCII digits
_Time = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
    ),
]
_Meta = dict[str, Any]


class _RunStart(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["run.start"]
    id: _Name
    # exactly one of the two: checked where the item is applied (a TypedDict has no validator)
    customer_id: NotRequired[_Name]
    external_customer_id: NotRequired[_Name]
    workflow: _Name
    parent_run_id: NotRequired[str | None]
    external_run_id: NotRequired[str | None]
    correlation_id: NotRequired[str | None]
    metadata: NotRequired[_Meta | None]
    started_at: NotRequired[_Time | None]


class _Event(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["event"]
    id: _Name
    run_id: _Name
    event_type: _Name
    meter: NotRequired[str | None]
    quantity: NotRequired[_Quantity | None]
    units: NotRequired[str | None]
    description: NotRequired[str | None]
    parent_event_id: NotRequired[str | None]
    correlation_id: NotRequired[str | None]
    span_id: NotRequired[str | None]
    timestamp: NotRequired[_Time | None]
    duration_ms: NotRequired[float | None]
    outcome: NotRequired[str | None]
    error_type: NotRequired[str | None]
    metadata: NotRequired[_Meta | None]


class _Usage(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["usage"]
    id: _Name
    customer_id: NotRequired[_Name]
    external_customer_id: NotRequired[_Name]
    usage_type: _Name
    quantity: _Quantity
    units: NotRequired[str | None]
    description: NotRequired[str | None]
    correlation_id: NotRequired[str | None]
    timestamp: NotRequired[_Time | None]
    metadata: NotRequired[_Meta | None]


class _RunEnd(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    type: Literal["run.end"]
    run_id: _Name
    status: RunStatus
    error_message: NotRequired[str | None]
    error_code: NotRequired[str | None]
    ended_at: NotRequired[_Time | None]
    metadata: NotRequired[_Meta | None]


class _Body(TypedDict):
    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    items: list[
        Annotated[_RunStart | _Event | _Usage | _RunEnd | Columns, Field(discriminator="type")]
    ]


#: the fast schemas, by item type (for the test that holds them to the models)
FAST_ITEMS: dict[str, type[Any]] = {
    "run.start": _RunStart,
    "event": _Event,
    "usage": _Usage,
    "run.end": _RunEnd,
}

_FAST: TypeAdapter[_Body] = TypeAdapter(_Body)
_ITEM: TypeAdapter[Any] = TypeAdapter(IngestItem)
_COLUMNS: TypeAdapter[Columns] = TypeAdapter(Columns)


@dataclass
class Rejected:
    """An item that does not fit its model."""

    id: str | None
    code: str
    message: str


def _ident(item: Any) -> str | None:
    if isinstance(item, dict):
        for key in ("id", "runId", "run_id"):
            if isinstance(item.get(key), str):
                return str(item[key])
    return None


#: a JSON escape of NUL or of a surrogate (a pair is fine, but rare enough to take the slow way)
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")


def _text_ident(item: Any) -> str | None:
    """The item's id for its rejection; an id that cannot be stored is sent back escaped."""
    ident = _ident(item)
    if ident is None or find_bad_text(ident) is None:
        return ident
    return ident.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def parse_batch(raw: bytes) -> tuple[list[Item | Rejected], bool]:
    """Validate a request body: each item as a dict, or a rejection for an item that does not
    fit its model; and whether the fast schema took the whole body (then every item is valid
    and every timestamp given is in the wire format)."""
    fast = _SUSPECT.search(raw) is None
    parsed: list[Item | Rejected] = []
    if fast:
        try:
            parsed = _FAST.validate_json(raw)["items"]  # type: ignore[assignment]
        except ValueError:  # ValidationError, or bytes that are not UTF-8
            fast = False
        else:
            _check_metadata(raw, parsed)
            if b'"events"' in raw:  # the usual SDK batch: a few column items among the others
                parsed = _expand_all(parsed)
    if not fast:
        parsed = _expand_all(_parse_each(decode(raw)))
    if len(parsed) > MAX_ITEMS:
        raise ApiError(413, "TOO_MANY_ITEMS", f"items: at most {MAX_ITEMS} items per request")
    return parsed, fast


def _expand_all(parsed: Sequence[Item | Rejected | list[Item | Rejected]]) -> list[Item | Rejected]:
    """The items with each ``events`` item replaced by its events (or their rejections); the
    event count is checked against ``MAX_ITEMS`` before anything is expanded."""
    at = [i for i, item in enumerate(parsed) if isinstance(item, dict) and item["type"] == "events"]
    if not at and not any(isinstance(item, list) for item in parsed):
        return parsed  # type: ignore[return-value]
    total = len(parsed) + sum(event_count(parsed[i]) - 1 for i in at)
    if total > MAX_ITEMS:
        raise ApiError(413, "TOO_MANY_ITEMS", f"items: at most {MAX_ITEMS} events per request")
    out: list[Item | Rejected] = []
    for i, item in enumerate(parsed):
        if isinstance(item, list):  # the rejections of a bad column item (slow path)
            out += item
        elif isinstance(item, dict) and item["type"] == "events":
            try:
                events = expand(item)  # type: ignore[arg-type]
            except Exception as exc:  # never a 500 for content: the item alone is refused
                events = f"events: cannot be expanded ({exc.__class__.__name__})"
            if isinstance(events, str):
                out += _reject_columns(item, "VALIDATION_ERROR", f"items[{i}].{events}")
            else:
                out += events
        else:
            out.append(item)
    return out


def _reject_columns(item: Any, code: str, message: str) -> list[Item | Rejected]:
    """One rejection per event of a column item (the answer has a result per event)."""
    return [Rejected(None, code, message)] * event_count(item)


def _check_metadata(raw: bytes, parsed: list[Item | Rejected]) -> None:
    """Reject the items whose metadata breaks the rules the schema cannot express. A body
    whose text names no ``"metadata"`` key, not even written with escapes, holds none to check:
    the SDK's usual batch, which then skips a Python step per item."""
    if b'"metadata"' not in raw and b"\\u" not in raw:
        return
    for i, item in enumerate(parsed):
        meta = item.get("metadata")  # type: ignore[union-attr]
        problem = None if meta is None else metadata_problem(meta)
        if problem is not None:
            parsed[i] = Rejected(_ident(item), "VALIDATION_ERROR", f"items[{i}].metadata {problem}")


def _parse_each(data: Any) -> list[Item | Rejected | list[Item | Rejected]]:
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ApiError(422, "VALIDATION_ERROR", "items: must be a list of ingest items")
    if sum(map(event_count, items)) > MAX_ITEMS:  # before any item is validated
        raise ApiError(413, "TOO_MANY_ITEMS", f"items: at most {MAX_ITEMS} events per request")
    out: list[Item | Rejected | list[Item | Rejected]] = []
    for i, item in enumerate(items):
        columns = isinstance(item, dict) and item.get("type") == "events"
        bad_text = find_bad_text(item, f"items[{i}]")
        if bad_text is not None:
            if columns:
                out.append(_reject_columns(item, "INVALID_TEXT", bad_text))
            else:
                out.append(Rejected(_text_ident(item), "INVALID_TEXT", bad_text))
            continue
        if columns:
            try:
                out.append(_COLUMNS.validate_python(item))  # type: ignore[arg-type]
            except ValidationError as exc:
                message = describe_validation_error(exc, prefix=f"items[{i}]")
                out.append(_reject_columns(item, "VALIDATION_ERROR", message))
            continue
        try:
            model = _ITEM.validate_python(item)
        except ValidationError as exc:
            message = describe_validation_error(exc, prefix=f"items[{i}]")
            out.append(Rejected(_ident(item), "VALIDATION_ERROR", message))
            continue
        out.append(dict(model.__dict__))
    return out
