"""The rules for names, quantities, metadata and free text: the one place they are written.

Client methods, ``@metered``, ``drip.run``, ``run.event`` and the server's ingest parser all
ask here, so what the SDK queues the server accepts, and the two can never drift apart.

The rules (and why):

* **Names** (meters, workflows, event types, ids, keys): a non-blank ``str`` of at most
  ``MAX_NAME_LENGTH`` characters, with no lone surrogate and no NUL. Names are stored as text
  and used in indexes; PostgreSQL text cannot hold NUL, and no encoding can hold a lone
  surrogate (what ``b"\\xff".decode("utf-8", "surrogateescape")`` makes).
* **Quantities**: an ``int`` or ``float`` (never a ``bool``), finite, ``>= 0`` and at most
  ``MAX_QUANTITY`` (10**15). The bound keeps every integer quantity exact as a float (2**53 is
  ~9e15), keeps ``quantity * price`` within what pricing stores (integer millionths in 64 bits),
  and turns an integer too large for a float into a ``DripValidationError`` instead of an
  ``OverflowError`` in the caller's code.
* **Metadata**: a ``dict`` with ``str`` keys that encodes as strict JSON (no NaN or infinity)
  in at most ``MAX_METADATA_BYTES`` bytes, nested at most ``MAX_METADATA_DEPTH`` levels, with
  no lone surrogate or NUL in any key or string. The same limits hold on the server.
* **Free text** the SDK writes for you (an exception's message and class in a run end or an
  event's ``errorType``) is never refused: ``clean_text`` replaces lone surrogates and NUL with
  U+FFFD, so a failing run still ends. Free text you pass yourself (``units``,
  ``description``) follows the same replacement on the server's side of the rule: it must not
  hold them, and ``text_problem`` says why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import DripValidationError

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_QUANTITY",
    "ExternalId",
    "check_customer",
    "check_metadata",
    "check_name",
    "check_quantity",
    "check_text",
    "clean_text",
    "find_bad_text",
    "metadata_problem",
    "quantity_problem",
    "text_problem",
]

#: Largest metadata object accepted, as compact JSON bytes (client and server).
MAX_METADATA_BYTES = 16 * 1024
#: Longest identifier-like string (ids, keys, meters, event types).
MAX_NAME_LENGTH = 256
#: Largest quantity accepted (client and server): integers stay exact, prices stay in range.
MAX_QUANTITY = 10**15
#: Deepest nesting of metadata (the object itself is level 1).
MAX_METADATA_DEPTH = 32

#: a lone surrogate (never valid in UTF-8) or NUL (PostgreSQL text cannot hold it)
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (a lone surrogate or NUL), or None."""
    if value.isascii():
        return None if "\x00" not in value else "holds a NUL character"
    bad = _BAD_CHAR.search(value)
    if bad is None:
        return None
    if bad.group() == "\x00":
        return "holds a NUL character"
    return f"holds a lone surrogate ({bad.group()!a}: not valid UTF-8)"


def find_bad_text(value: Any, where: str = "") -> str | None:
    """The first string (key or value) anywhere in a decoded JSON value that cannot be
    stored, as ``"<path> <problem>"``, or None. Iterative: any depth, no RecursionError."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"{path or 'value'} {problem}"
        elif isinstance(item, dict):
            for key, inner in item.items():
                sub = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and text_problem(key) is not None:
                    return f"a key in {path or 'the body'} {text_problem(key)}"
                stack.append((sub, inner))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", inner) for i, inner in enumerate(item))
    return None


def clean_text(value: str) -> str:
    """``value`` with lone surrogates and NUL replaced by U+FFFD (for text the SDK writes)."""
    if value.isascii() and "\x00" not in value:
        return value
    return _BAD_CHAR.sub("\ufffd", value)


def check_text(value: Any, field: str) -> str | None:
    """Optional free text given by the caller: a ``str`` that can be stored, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, got {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise DripValidationError(f"{field} {problem}", field=field)
    return value


def check_name(value: Any, field: str, *, optional: bool = False) -> str | None:
    """A meter, workflow, event type or id: a non-empty string of at most 256 characters.

    A non-string is a ``TypeError``; a blank, too long or unstorable one a
    ``DripValidationError``. With ``optional``, None passes through.
    """
    if (
        type(value) is str
        and 0 < len(value) <= MAX_NAME_LENGTH
        and value.isascii()
        and value.isprintable()
        and not value.isspace()
    ):
        return value  # the common case, without allocating
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, got {type(value).__name__}")
    if not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise DripValidationError(
            f"{field} must be a non-empty string of at most {MAX_NAME_LENGTH} characters, "
            f"got {value[:80]!r}",
            field=field,
        )
    problem = text_problem(value)
    if problem is not None:
        raise DripValidationError(f"{field} {problem}", field=field)
    return value


def quantity_problem(value: Any) -> str | None:
    """Why ``value`` is not a quantity, or None (see the module docstring)."""
    cls = value.__class__
    if cls is int:
        if 0 <= value <= MAX_QUANTITY:
            return None
    elif cls is float:
        if 0.0 <= value <= MAX_QUANTITY:
            return None  # NaN fails both comparisons
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be finite, got {value!r}"
    if value < 0:
        return f"must be >= 0, got {value!r}"
    if value > MAX_QUANTITY:
        if isinstance(value, float):
            shown = f"{value:.3g}"
        elif value.bit_length() > 100:  # too large for a float, and for a readable repr
            shown = f"an integer of {value.bit_length()} bits"
        else:
            shown = repr(value)
        return f"must be at most {MAX_QUANTITY:.0e}, got {shown}"
    return None


def check_quantity(value: Any, field: str = "quantity") -> float:
    """A quantity as a float, or a ``DripValidationError`` naming ``field``."""
    problem = quantity_problem(value)
    if problem is not None:
        raise DripValidationError(f"{field} {problem}", field=field)
    return float(value)


def _deep_problem(value: Any, depth: int) -> str | None:
    """A problem with a decoded JSON value that size alone does not show, or None."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, dict):
        if depth > MAX_METADATA_DEPTH:
            return f"is nested deeper than {MAX_METADATA_DEPTH} levels"
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has a key that is not a string ({key!r})"
            problem = text_problem(key) or _deep_problem(item, depth + 1)
            if problem is not None:
                return problem
    elif isinstance(value, (list, tuple)):
        if depth > MAX_METADATA_DEPTH:
            return f"is nested deeper than {MAX_METADATA_DEPTH} levels"
        for item in value:
            problem = _deep_problem(item, depth + 1)
            if problem is not None:
                return problem
    elif isinstance(value, float) and not math.isfinite(value):
        return f"holds {value!r} (not JSON)"
    return None


#: What one flat item can take as ASCII JSON beside its strings' characters, at most: a key's
#: quotes, ":" and "," (4), then a float's shortest repr (``-2.2250738585072014e-308``, 24),
#: which is more than an int in ``_FLAT_INT`` (``-9223372036854775808``, 20), a string's
#: quotes (2), ``false`` or ``null`` (5).
_ITEM_JSON_MAX = 4 + 24
_FLAT_INT = 2**63


def _flat_fits(value: dict[Any, Any]) -> bool:
    """True when ``value`` is certainly valid metadata, without encoding it.

    The common case (a small flat dict of plain ``str``/``int``/``float``/``bool``/None) is
    proven valid from an upper bound of its JSON size: a string's characters escape to at most
    6 bytes each (``\\u00XX``), or 12 outside ASCII (a surrogate pair). Anything else (a
    nested value, a subclass, a bad character, a non-finite float, a big int, a bound over the
    limit) returns False and takes the full check, which alone decides and words every refusal.
    """
    narrow = wide = 0  # characters of keys and strings, ASCII and not
    for key, item in value.items():
        if key.__class__ is not str:
            return False
        if key.isascii():
            if "\x00" in key:
                return False
            narrow += len(key)
        elif _BAD_CHAR.search(key) is not None:
            return False
        else:
            wide += len(key)
        cls = item.__class__
        if cls is str:
            if item.isascii():
                if "\x00" in item:
                    return False
                narrow += len(item)
            elif _BAD_CHAR.search(item) is not None:
                return False
            else:
                wide += len(item)
        elif cls is int:
            if not -_FLAT_INT <= item < _FLAT_INT:
                return False
        elif cls is float:
            if item - item != 0.0:  # NaN or an infinity (inf - inf is NaN)
                return False
        elif item is not None and cls is not bool:
            return False
    # "{" and "}", minus the "," the last item lacks
    return 1 + 6 * narrow + 12 * wide + _ITEM_JSON_MAX * len(value) <= MAX_METADATA_BYTES


def metadata_problem(value: Any) -> str | None:
    """Why ``value`` is not valid metadata, or None. Used as is by the server's parser."""
    if value.__class__ is dict and _flat_fits(value):
        return None
    return _full_metadata_problem(value)


def _full_metadata_problem(value: Any) -> str | None:
    """``metadata_problem`` for any value: deep checks, then the encoded size."""
    if not isinstance(value, Mapping):
        return f"must be a dict, got {type(value).__name__}"
    problem = _deep_problem(dict(value), 1)
    if problem is not None:
        return problem
    try:
        size = len(_encode(value))  # ASCII JSON: its length is its size in bytes
    except (TypeError, ValueError, RecursionError) as exc:
        return f"is not JSON-serialisable: {exc}"
    if size > MAX_METADATA_BYTES:
        return f"is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
    return None


def check_metadata(metadata: Any, field: str = "metadata") -> dict[str, Any] | None:
    """Metadata as a (shallow-copied) dict, None for None, or a ``DripValidationError``."""
    if metadata is None:
        return None
    problem = metadata_problem(metadata)
    if problem is not None:
        raise DripValidationError(f"{field} {problem}", field=field)
    return dict(metadata)


class ExternalId(str):
    """A customer named by the caller's own id (``external_customer_id=``).

    It travels through the context like any customer id (it is a ``str``); only the record
    encoders look at the type, to write ``externalCustomerId`` instead of ``customerId``. The
    server finds the customer, or creates it on first use: no look-up on the caller's path.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ExternalId({str(self)!r})"


def check_customer(
    customer_id: Any, external_customer_id: Any, where: str, *, required: bool = False
) -> str | None:
    """The customer an instrumentation entry point names: Drip's id, an ``ExternalId``, or
    None (inherit from the context); both at once, or neither when ``required``, is a
    ``DripValidationError`` raised where the mistake is made."""
    if customer_id is not None and external_customer_id is not None:
        raise DripValidationError(
            f"{where}: pass customer_id (Drip's cus_… id) or external_customer_id (your own "
            "id), not both",
            field="customer_id",
        )
    if external_customer_id is not None:
        return ExternalId(check_name(external_customer_id, "external_customer_id"))
    if customer_id is None and required:
        raise DripValidationError(
            f"{where}: pass customer_id (Drip's cus_… id) or external_customer_id (your own id)",
            field="customer_id",
        )
    return check_name(customer_id, "customer_id", optional=True)
