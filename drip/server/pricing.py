"""Flat prices per meter for charges (``POST /v1/usage``) and timeline costs.

``drip serve --price tokens=0.000002 --price api_calls=0.001 --default-price 0`` — USDC per
unit. Amounts are computed in Decimal and kept as integer millionths of a USDC.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

__all__ = ["MAX_MICROS", "MICROS", "Pricing", "format_usdc", "parse_price"]

MICROS = Decimal(1_000_000)
#: the largest charge stored (micros in a signed 64-bit column): about 9.2 trillion USDC
MAX_MICROS = 2**63 - 1
_WIDE = Context(prec=800, Emax=999_999, Emin=-999_999)


def format_usdc(micros: int) -> str:
    """Millionths of a USDC as the wire's 6-decimal string (``"0.001000"``)."""
    return str((Decimal(micros) / MICROS).quantize(Decimal("0.000001")))


def parse_price(text: str) -> tuple[str, Decimal]:
    """``"METER=PRICE"`` -> (meter, price); raises ValueError with a readable message."""
    meter, sep, raw = text.partition("=")
    if not sep or not meter.strip():
        raise ValueError(f"expected METER=USDC_PER_UNIT, got {text!r}")
    return meter.strip(), _price(raw)


def _price(raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"not a price: {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"a price must be a finite number >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Pricing:
    """Price per unit of each meter, in USDC; ``default`` for meters not listed."""

    prices: Mapping[str, Decimal] = field(default_factory=dict)
    default: Decimal = Decimal(0)

    @classmethod
    def build(
        cls,
        prices: Mapping[str, float | str | Decimal] | Iterable[str] | None,
        default: float | str | Decimal = 0,
    ) -> Pricing:
        """From a mapping or ``METER=PRICE`` strings (as the CLI takes them)."""
        table: dict[str, Decimal] = {}
        if isinstance(prices, Mapping):
            table = {meter: _price(str(p)) for meter, p in prices.items()}
        elif prices is not None:
            table = dict(parse_price(item) for item in prices)
        return cls(prices=table, default=_price(str(default)))

    def micros(self, meter: str, quantity: float) -> int:
        """The cost of ``quantity`` units of ``meter`` in millionths of a USDC."""
        price = self.prices.get(meter, self.default)
        if not price or not math.isfinite(quantity):
            return 0  # a non-finite quantity never reaches a charge (``storage.usage``)
        # wide enough for any finite float: reads of huge stored quantities never raise
        amount = _WIDE.multiply(_WIDE.multiply(Decimal(repr(float(quantity))), price), MICROS)
        return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_WIDE))
