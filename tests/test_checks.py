"""``drip._checks``: the one set of rules for names, quantities, metadata and text.

The same functions guard client methods, ``@metered``, ``run``, ``run.event`` and the server's
ingest parser; these tests pin the rules themselves, and that each entry point uses them.
"""

from __future__ import annotations

import enum
import json
import math
import random
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from drip import _checks
from drip import instrument as drip
from drip._checks import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_QUANTITY,
    check_metadata,
    check_name,
    check_quantity,
    check_text,
    clean_text,
    metadata_problem,
    quantity_problem,
    text_problem,
)
from drip.errors import DripValidationError
from drip.testing import capture

LONE = b"f\xff".decode("utf-8", "surrogateescape")


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("value", [0, 1, 2.5, MAX_QUANTITY, float(MAX_QUANTITY), 0.0])
def test_good_quantities(value: Any) -> None:
    assert quantity_problem(value) is None
    assert check_quantity(value) == float(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-5, "must be >= 0"),
        (-0.001, "must be >= 0"),
        (math.nan, "must be finite"),
        (math.inf, "must be finite"),
        (-math.inf, "must be finite"),
        (MAX_QUANTITY + 1, "must be at most"),
        (1e27, "must be at most"),
        (10**400, "must be at most"),  # too large for a float: no OverflowError
        (True, "must be a number, got bool"),
        ("3", "must be a number, got str"),
        (None, "must be a number, got NoneType"),
    ],
)
def test_bad_quantities(value: Any, message: str) -> None:
    assert message in (quantity_problem(value) or "")
    with pytest.raises(DripValidationError, match=message) as info:
        check_quantity(value, "events.0.quantity")
    assert info.value.field == "events.0.quantity"


def test_names() -> None:
    assert check_name("tokens", "meter") == "tokens"
    assert check_name("café", "meter") == "café"  # non-ASCII is fine, only unstorable is not
    assert check_name(None, "meter", optional=True) is None
    with pytest.raises(TypeError, match="meter must be a string"):
        check_name(3, "meter")
    for bad in ("", "  ", "x" * 257, LONE, "a\x00b"):
        with pytest.raises(DripValidationError) as info:
            check_name(bad, "meter")
        assert info.value.field == "meter"


def test_text() -> None:
    assert text_problem("plain") is None and text_problem("é") is None
    assert "lone surrogate" in (text_problem(LONE) or "")
    assert "NUL" in (text_problem("a\x00") or "")
    assert clean_text(LONE) == "f\ufffd" and clean_text("a\x00") == "a\ufffd"
    assert clean_text("ok") == "ok"
    assert check_text(None, "units") is None
    with pytest.raises(DripValidationError, match="units holds a lone surrogate"):
        check_text(LONE, "units")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a dict"),
        ({"x": math.nan}, "nan"),
        ({"x": [1, math.inf]}, "inf"),
        ({"x": object()}, "not JSON-serialisable"),
        ({1: "x"}, "key that is not a string"),
        ({"x": "y" * MAX_METADATA_BYTES}, "bytes as JSON"),
        ({"x": LONE}, "lone surrogate"),
        ({LONE: 1}, "lone surrogate"),
        ({"x": ["a\x00"]}, "NUL"),
        (nested(MAX_METADATA_DEPTH + 1), "nested deeper"),
        (nested(5000), "nested deeper"),  # no RecursionError
    ],
)
def test_bad_metadata(value: Any, message: str) -> None:
    assert message in (metadata_problem(value) or "")
    with pytest.raises(DripValidationError, match="metadata"):
        check_metadata(value)


def test_good_metadata() -> None:
    meta = {"a": [1, 2.5, None, True, {"b": "é"}], "deep": nested(MAX_METADATA_DEPTH - 1)}
    assert metadata_problem(nested(MAX_METADATA_DEPTH)) is None
    assert metadata_problem(meta) is None
    copy = check_metadata(meta)
    assert copy == meta and copy is not meta
    assert check_metadata(None) is None


# -- the flat fast path decides exactly as the full check --------------------------------------


class Colour(enum.IntEnum):
    RED = 1


class Tag(str):
    pass


def _at_limit(filler: str, per_char: int) -> dict[str, Any]:
    """``{"x": filler * n}`` whose compact JSON is exactly ``MAX_METADATA_BYTES`` bytes."""
    n, rest = divmod(MAX_METADATA_BYTES - len('{"x":""}'), per_char)
    value = {"x": filler * n + "y" * rest}
    assert len(json.dumps(value, separators=(",", ":"))) == MAX_METADATA_BYTES
    return value


def _grow(value: dict[str, Any], by: int) -> dict[str, Any]:
    return {"x": value["x"] + "y" * by}


#: short keys and long numbers: over the limit though its strings hold few characters
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
LONG_FLOATS = {f"{a}{b}": -2.2250738585072014e-308 for a in _ALNUM for b in _ALNUM[:20]}

EDGES: list[Any] = [
    {},
    {"status_code": 200, "route": "/items/{id}", "method": "GET", "duration_ms": 1.25},
    {"ok": True, "no": False, "none": None, "neg": -1, "zero": 0.0, "negzero": -0.0},
    {"x": math.nan},
    {"x": math.inf},
    {"x": -math.inf},
    {"x": 2**63 - 1},
    {"x": -(2**63)},
    {"x": 2**63},
    {"x": -(2**63) - 1},
    {"x": 10**400},  # JSON-able, 401 digits
    {"x": 10**5000},  # beyond int -> str's digit limit: not JSON-serialisable
    {"x": 5e-324, "y": -2.2250738585072014e-308, "z": 1.7976931348623157e308},
    {"x": LONE},
    {LONE: 1},
    {"x": "a\x00"},
    {"a\x00": 1},
    {"x": "é\x00"},
    {"x": "\ud83d"},  # a lone high surrogate
    {"x": "\U0001f600" * 10},  # non-BMP: 12 JSON bytes per character
    {"é": "ü", "k": "\u2028"},
    {1: "x"},
    {None: "x"},
    {("a", 1): "x"},
    {"x": object()},
    {"x": b"bytes"},
    {"x": [1, 2]},
    {"x": {"y": 1}},
    {"x": (1, 2)},
    {"x": Colour.RED},
    {"x": Tag("t")},
    {Tag("k"): 1},
    {"x": 1 + 2j},
    OrderedDict(x=1),
    MappingProxyType({"x": 1}),
    MappingProxyType({"x": math.nan}),
    [],
    "metadata",
    None,
    _at_limit("y", 1),
    _grow(_at_limit("y", 1), 1),
    _at_limit("\n", 2),  # an escaped control character: 2 bytes
    _at_limit("\x01", 6),  # \u0001: 6 bytes
    _at_limit("é", 6),
    _at_limit("\U0001f600", 12),
    {"x": "y" * (MAX_METADATA_BYTES // 6)},  # the fast path's bound alone would refuse it
    {f"k{i}": i for i in range(2000)},  # many small items, within the limit
    {f"k{i}": 1.5 for i in range(3000)},  # over the limit
    {f"k{i}": None for i in range(1600)},
    LONG_FLOATS,
]


@pytest.mark.parametrize("value", EDGES, ids=range(len(EDGES)))
def test_fast_path_matches_full_check(value: Any) -> None:
    assert metadata_problem(value) == _checks._full_metadata_problem(value)


def test_fast_path_exact_limits() -> None:
    for filler, per_char in (("y", 1), ("\n", 2), ("\x01", 6), ("é", 6), ("\U0001f600", 12)):
        assert metadata_problem(_at_limit(filler, per_char)) is None
        over = {"x": _at_limit(filler, per_char)["x"] + filler}
        size = MAX_METADATA_BYTES + per_char
        assert metadata_problem(over) == (
            f"is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
        )
    over = _grow(_at_limit("y", 1), 1)
    assert metadata_problem(over) == (
        f"is {MAX_METADATA_BYTES + 1} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
    )
    assert "not JSON-serialisable" in (metadata_problem({"x": 10**5000}) or "")
    assert "bytes as JSON" in (metadata_problem(LONG_FLOATS) or "")
    big_ints = {f"{a}{b}": -(2**63) for a in _ALNUM for b in _ALNUM[:20]}
    assert "bytes as JSON" in (metadata_problem(big_ints) or "")


def test_fast_path_matches_full_check_random() -> None:
    rng = random.Random(20261202)
    chars = [
        "a",
        "Z",
        "0",
        " ",
        "\n",
        "\x01",
        "\x00",
        '"',
        "\\",
        "é",
        "\u2028",
        "\U0001f600",
        "\ud800",
        "\udfff",
    ]

    def text() -> str:
        return "".join(rng.choice(chars) for _ in range(rng.choice((0, 1, 3, 40, 900))))

    def leaf() -> Any:
        return rng.choice(
            [
                text,
                lambda: rng.choice([0, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30]),
                lambda: rng.choice([0.5, -0.0, 1e308, math.nan, math.inf, -math.inf]),
                lambda: rng.choice([True, False, None]),
                lambda: rng.choice([[1], {"n": 1}, object(), Colour.RED, Tag("t")]),
            ]
        )()

    for _ in range(3000):
        value = {
            (text() if rng.random() < 0.97 else rng.choice([1, None])): leaf()
            for _ in range(rng.choice((0, 1, 4, 16, 60)))
        }
        assert metadata_problem(value) == _checks._full_metadata_problem(value), value


# -- every entry point asks the same rules ------------------------------------------------------


def test_run_event_refuses_what_metered_refuses() -> None:
    big = {"x": "y" * 50_000}
    with pytest.raises(DripValidationError, match="metadata"):
        drip.metered("m", metadata=big)
    with pytest.raises(DripValidationError, match="metadata"):
        drip.metered("m", metadata={"x": math.nan})
    with capture(strict=False) as cap, drip.run("wf", customer_id="c") as run:
        assert run.event("e", metadata=big) is None
        assert run.event("e", metadata={"x": math.nan}) is None
        assert run.event("e", quantity=-1) is None
        assert run.event("e", units=LONE) is None
        assert run.event("ok", quantity=2, metadata={"fine": 1}) is not None
    assert [e.event_type for e in cap.events] == ["ok"]
    assert len(cap.errors) == 4


def test_run_and_metered_check_at_decoration() -> None:
    with pytest.raises(DripValidationError, match="metadata"):
        drip.run("wf", customer_id="c", metadata={"x": LONE})
    with pytest.raises(DripValidationError, match="quantity"):
        drip.metered("m", quantity=-1)
    with pytest.raises(DripValidationError, match="units"):
        drip.metered("m", units="a\x00")
    with pytest.raises(DripValidationError, match="workflow"):
        drip.run(LONE, customer_id="c")


def test_a_failed_run_with_odd_text_still_ends() -> None:
    with capture() as cap, pytest.raises(ValueError), drip.run("wf", customer_id="c"):
        raise ValueError(LONE + "\x00")
    end = cap.run_ends[0]
    assert end.status == "FAILED" and end.error_message == "f\ufffd\ufffd"
