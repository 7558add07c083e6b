"""Exact decimal totals: how quantities are summed and written on the wire.

Quantities arrive as JSON numbers (Python floats). Summing floats drifts (ten 0.1s make
0.9999999999999999), so totals are kept as decimals of each float's shortest repr: ``0.1`` adds
as ``Decimal("0.1")``. Whole numbers, nearly every quantity, stay Python ints (exact and cheap).
PostgreSQL stores the sums as NUMERIC; SQLite, which has no decimal type, as text added by
``drip_dec_add`` (registered on each SQLite connection by :func:`register_sqlite`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

__all__ = [
    "ZERO",
    "add_text",
    "as_decimal",
    "decimal_sum",
    "decimal_text",
    "exact",
    "register_sqlite",
]

ZERO = Decimal(0)


def exact(value: float) -> int | Decimal:
    """``value`` as an exact number: an int when whole, else the decimal of its repr."""
    if value.is_integer():
        return int(value)
    return Decimal(repr(value))


def as_decimal(value: Any) -> Decimal:
    """A stored sum (Decimal on PostgreSQL, text on SQLite, None) as a Decimal."""
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def decimal_text(value: Decimal | int) -> str:
    """``"1700"``, ``"0.3"``: no exponent, no trailing zeros."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def decimal_sum(dialect: str, column: Any) -> Any:
    """The exact SQL sum of a decimal column, for the dialect. On SQLite whole numbers (the
    usual case: token counts, calls) are summed by SQLite itself as integers; only values
    with a decimal point go through Python's ``drip_dec_sum``."""
    from sqlalchemy import Integer, case, cast, func

    if dialect == "postgresql":
        return func.sum(column)
    fraction = func.instr(column, ".") > 0
    whole = func.sum(case((fraction, None), else_=cast(column, Integer)))
    return func.drip_dec_add(whole, func.drip_dec_sum(case((fraction, column), else_=None)))


def add_text(a: Any, b: Any) -> str:
    """SQLite's ``drip_dec_add(a, b)``: the exact sum of two stored decimals, as text."""
    return decimal_text(as_decimal(a) + as_decimal(b))


class _Sum:
    """SQLite's ``drip_dec_sum(x)``: the exact sum of stored decimals, as text."""

    def __init__(self) -> None:
        self.total = ZERO

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += Decimal(value)

    def finalize(self) -> str:
        return decimal_text(self.total)


def register_sqlite(dbapi_conn: Any) -> None:
    """Make ``drip_dec_add(a, b)`` and ``drip_dec_sum(x)`` available on a ``sqlite3``
    connection (PostgreSQL's NUMERIC ``+`` and ``sum`` do the same)."""
    dbapi_conn.create_function("drip_dec_add", 2, add_text, deterministic=True)
    dbapi_conn.create_aggregate("drip_dec_sum", 1, _Sum)
