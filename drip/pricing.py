"""What an LLM call costs: USD per million tokens, per model, computed on the client.

The table ships with drip as JSON (``drip/data/prices.json``, dated by its ``as_of``) and is
read once, on first use. Two ways to change it, the later winning:

- a JSON file of the same shape named by ``DRIP_PRICES`` (``{"models": {name: {...}}}``), read
  with the shipped table;
- ``drip.pricing.set_price("my-model", input=1.0, output=2.0)`` at run time.

A price has ``input`` and ``output`` rates and, optionally, ``cached_input`` (cache reads),
``cache_write`` (cache creation) and ``reasoning``; a missing optional rate falls back to
``input`` (for the cache rates) or ``output`` (for reasoning).

Model names are matched case-insensitively, after dropping a provider prefix
(``openai/gpt-4o`` -> ``gpt-4o``) and then a dated or ``-latest`` suffix
(``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``, ``claude-sonnet-4-5-20250929`` ->
``claude-sonnet-4-5``), so a dated snapshot is priced as its family unless it has its own entry.
An unknown model costs ``None`` (tokens are still recorded) and is logged once per model.

Token counts given to :func:`cost` are the normalised ones drip records: ``input_tokens``
counts every input token, cache reads and writes included; ``output_tokens`` counts reasoning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["Price", "cost", "get_price", "reset", "set_price", "table_date"]

logger = logging.getLogger("drip")

_DATED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-latest)$")
_RATES = ("input", "output", "cached_input", "cache_write", "reasoning")


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind (None: priced as ``input`` / ``output``)."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None


_lock = threading.Lock()
_table: dict[str, Price] | None = None
_date: str | None = None
_overrides: dict[str, Price] = {}
_warned: set[str] = set()
#: model name as given -> its price (or None), so the hot path matches each name once
_memo: dict[str, Price | None] = {}


def _parse(name: str, entry: Any, source: str) -> Price:
    if not isinstance(entry, dict) or "input" not in entry or "output" not in entry:
        raise ValueError(f"{source}: the price of {name!r} needs 'input' and 'output' rates")
    unknown = set(entry) - set(_RATES)
    if unknown:
        raise ValueError(f"{source}: the price of {name!r} has unknown keys {sorted(unknown)}")
    rates = {k: _rate(v, f"{source}: {name}.{k}") for k, v in entry.items() if v is not None}
    return Price(**rates)


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{where} must be a non-negative number, got {value!r}")
    return float(value)


def _read(text: str, source: str) -> tuple[str | None, dict[str, Price]]:
    data = json.loads(text)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ValueError(f"{source}: expected an object with a 'models' object")
    return data.get("as_of"), {k.lower(): _parse(k, v, source) for k, v in models.items()}


def _load() -> dict[str, Price]:
    global _table, _date
    with _lock:
        if _table is None:
            shipped = resources.files("drip").joinpath("data/prices.json").read_text("utf-8")
            date, table = _read(shipped, "drip/data/prices.json")
            path = os.environ.get("DRIP_PRICES")
            if path:
                with open(path, encoding="utf-8") as f:
                    _, extra = _read(f.read(), f"DRIP_PRICES={path}")
                table.update(extra)
            _date, _table = date, table
        return _table


def table_date() -> str | None:
    """The ``as_of`` date of the shipped price table."""
    _load()
    return _date


def set_price(
    model: str,
    *,
    input: float,
    output: float,
    cached_input: float | None = None,
    cache_write: float | None = None,
    reasoning: float | None = None,
) -> None:
    """Price ``model`` (USD per million tokens), over the shipped table and ``DRIP_PRICES``."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    rates = {"input": input, "output": output, "cached_input": cached_input,
             "cache_write": cache_write, "reasoning": reasoning}  # fmt: skip
    price = _parse(model, {k: v for k, v in rates.items() if v is not None}, "set_price")
    with _lock:
        _overrides[model.lower()] = price
        _warned.discard(model)
        _memo.clear()


def reset() -> None:
    """Forget ``set_price`` overrides and re-read the table (and ``DRIP_PRICES``) on next use."""
    global _table
    with _lock:
        _overrides.clear()
        _warned.clear()
        _memo.clear()
        _table = None


def get_price(model: str) -> Price | None:
    """The price of ``model`` (see the module docstring for name matching), or None."""
    try:
        return _memo[model]
    except KeyError:
        pass
    price = _match(model)
    if len(_memo) < 10_000:  # model names come from providers: bounded, but be safe
        _memo[model] = price
    return price


def _match(model: str) -> Price | None:
    table = _table if _table is not None else _load()
    name = model.lower()
    candidates = [name]
    if "/" in name:
        candidates.append(name.rsplit("/", 1)[1])
    for candidate in list(candidates):
        base = _DATED.sub("", candidate)
        if base != candidate:
            candidates.append(base)
    for candidate in candidates:
        price = _overrides.get(candidate) or table.get(candidate)
        if price is not None:
            return price
    return None


def cost(
    model: str | None,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> float | None:
    """USD for one call's tokens on ``model``; None (logged once per model) if not priced."""
    price = None if not model else get_price(model)
    if price is None:
        key = model or "<no model>"
        if key not in _warned:
            _warned.add(key)
            logger.warning(
                "drip: no price for model %r; its tokens are recorded without cost_usd "
                "(set one with drip.pricing.set_price or DRIP_PRICES)",
                key,
            )
        return None
    plain_input = max(input_tokens - cached_input_tokens - cache_creation_input_tokens, 0)
    plain_output = max(output_tokens - reasoning_tokens, 0)
    # each missing rate falls back to the plain one (inline: this runs on every LLM call)
    cached, write, reasoning = price.cached_input, price.cache_write, price.reasoning
    total = (
        plain_input * price.input
        + cached_input_tokens * (price.input if cached is None else cached)
        + cache_creation_input_tokens * (price.input if write is None else write)
        + plain_output * price.output
        + reasoning_tokens * (price.output if reasoning is None else reasoning)
    )
    return round(total / 1_000_000, 10)
