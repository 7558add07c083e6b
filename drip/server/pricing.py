"""Flat prices per meter for charges (``POST /v1/usage``) and timeline costs.

``drip serve --price tokens=0.000002 --price api_calls=0.001 --default-price 0`` — USDC per
unit. Amounts are computed in Decimal and kept as integer millionths of a USDC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, InvalidOperation

__all__ = ["MICROS", "Pricing", "format_usdc", "parse_price"]

MICROS = Decimal(1_000_000)
#: wide enough for any float quantity times any price: a cost is never an InvalidOperation
#: (the ingest checks bound quantities; rows stored before them must still be readable)
_WIDE = Context(prec=1000, Emax=MAX_EMAX, Emin=MIN_EMIN)


def format_usdc(micros: int) -> str:
    """Millionths of a USDC as the wire's 6-decimal string (``"0.001000"``)."""
    amount = _WIDE.divide(Decimal(micros), MICROS)
    return str(amount.quantize(Decimal("0.000001"), context=_WIDE))


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
        if not price:
            return 0
        amount = _WIDE.multiply(_WIDE.multiply(Decimal(repr(float(quantity))), price), MICROS)
        if not amount.is_finite():  # an infinite quantity stored before the checks
            return 0
        return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_WIDE))
