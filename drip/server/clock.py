"""Timestamps on the wire and in the database: ISO-8601 UTC with microseconds and a ``Z``
(``2025-01-01T00:00:00.123456Z``, the SDK's own format).

One fixed format means stored strings sort in time order and the published client (which never
parses them) sees the same shape everywhere.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from .errors import ApiError

__all__ = [
    "MAX_DURATION_MS",
    "clamp_duration",
    "duration_ms",
    "field_time",
    "is_canonical",
    "normalize",
    "now_iso",
    "to_iso",
]


def to_iso(moment: datetime) -> str:
    """``2025-01-01T00:00:00.000000Z`` for an aware datetime (naive ones are taken as UTC).

    The year always has four digits (``strftime("%Y")`` writes year 999 as ``999`` on glibc,
    and stored times are compared as text). Raises OverflowError when the moment in UTC falls
    outside years 1-9999 (``0001-01-01T00:00:00+01:00``).
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat("T", "microseconds") + "Z"


def now_iso() -> str:
    """The current time in the wire format."""
    return to_iso(datetime.now(timezone.utc))


def _parse(value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # fromisoformat accepts "Z" only from Python 3.11
    return datetime.fromisoformat(text)


#: the SDK's own format, taken as is without parsing (the ingest hot path)
is_canonical = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z").fullmatch


def normalize(value: str | None, default: str) -> str:
    """A client timestamp in the wire format; ``default`` when it is None.

    Raises ValueError when the text is not an ISO-8601 date-time, or not one in years 1-9999
    once taken to UTC.
    """
    if value is None:
        return default
    if is_canonical(value):
        return value
    try:
        moment = _parse(value)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {value[:64]!r}") from None
    try:
        return to_iso(moment)
    except OverflowError:
        raise ValueError(f"outside years 1-9999 in UTC: {value[:64]!r}") from None


#: the longest duration an event is stored with (30 days, in ms); a longer one is this
MAX_DURATION_MS = 30 * 24 * 3600 * 1000


def clamp_duration(value: float | None) -> float | None:
    """An event's ``durationMs`` as stored: negative is 0, more than ``MAX_DURATION_MS`` is
    that, not finite (NaN, infinity) is None. Clamped, not refused: refusing the event would
    lose the usage it bills."""
    if value is None or 0 <= value <= MAX_DURATION_MS:
        return value
    if value != value or value in (math.inf, -math.inf):
        return None
    return 0.0 if value < 0 else float(MAX_DURATION_MS)  # floats: a column of one type


def duration_ms(start: str | None, end: str | None) -> int | None:
    """Whole milliseconds between two stored timestamps (None when either is missing)."""
    if not start or not end:
        return None
    delta = _parse(end) - _parse(start)
    return max(0, round(delta.total_seconds() * 1000))


def field_time(value: str | None, field: str, default: str) -> str:
    """A timestamp from a request body normalised, or a 422 naming the field."""
    try:
        return normalize(value, default)
    except ValueError as exc:
        raise ApiError(422, "VALIDATION_ERROR", f"{field}: {exc}") from None
