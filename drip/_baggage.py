"""W3C ``baggage`` headers: drip's members in, drip's members out, within the spec's limits.

drip carries a run to another process as baggage list-members whose keys start with ``drip.``
(``drip.run``, ``drip.customer`` or ``drip.customer_ext`` for a customer named by the
application's own id, ``drip.parent``, ``drip.workflow``), values percent-encoded.
Other members of the header (the application's, OpenTelemetry's) are kept as they are.

Limits (w3.org/TR/baggage, "Limits"): a header is propagated whole up to 8192 bytes and 64
list-members. ``merge`` never writes a header past them: when drip's members would not fit, the
header is left as it was (and the run does not travel) rather than made invalid. ``parse``
ignores a header past 8192 bytes without echoing it anywhere (it may hold personal data).
Nothing secret is ever put here: the API key never travels.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

__all__ = ["MAX_BYTES", "MAX_MEMBERS", "PREFIX", "merge", "parse"]

PREFIX = "drip."
MAX_BYTES = 8192
MAX_MEMBERS = 64
#: per member, as OpenTelemetry's propagator enforces (the older draft's limit)
MAX_MEMBER_BYTES = 4096


def _members(header: str) -> list[str]:
    return [m.strip() for m in header.split(",") if m.strip()]


def _key(member: str) -> str:
    return member.split("=", 1)[0].strip()


def parse(header: str | None) -> dict[str, str]:
    """drip's members of a ``baggage`` header, keys without the prefix, values decoded.

    Anything malformed is skipped member by member; an oversized header is ignored whole.
    """
    if not isinstance(header, str) or not header:
        return {}
    if len(header.encode("utf-8", "replace")) > MAX_BYTES:
        return {}
    found: dict[str, str] = {}
    for member in _members(header)[:MAX_MEMBERS]:
        key, sep, rest = member.partition("=")
        key = key.strip()
        if not sep or not key.startswith(PREFIX):
            continue
        value = unquote(rest.split(";", 1)[0].strip())
        if value:
            found[key[len(PREFIX) :]] = value
    return found


def merge(header: str | None, values: dict[str, str]) -> str | None:
    """``header`` with drip's members replaced by ``values`` (None values are left out).

    When the result would break a W3C limit, drip's members do not travel: the header is
    returned unchanged, or without the drip members it held (another run's, from the request
    being served: they must not name the wrong run downstream).
    """
    members = _members(header or "")
    kept = [m for m in members if not _key(m).startswith(PREFIX)]
    unchanged = header if len(kept) == len(members) else ",".join(kept) or None
    ours = [f"{PREFIX}{k}={quote(v, safe='')}" for k, v in values.items() if v]
    if any(len(m) > MAX_MEMBER_BYTES for m in ours):
        return unchanged
    members = kept + ours
    merged = ",".join(members)
    if len(members) > MAX_MEMBERS or len(merged.encode("utf-8", "replace")) > MAX_BYTES:
        return unchanged
    return merged or None
