"""drip.pricing: the shipped table, overrides, name matching, cost arithmetic."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from drip import pricing


@pytest.fixture(autouse=True)
def _fresh_table() -> Iterator[None]:
    pricing.reset()
    yield
    pricing.reset()


def test_the_table_is_dated_and_shipped_as_package_data() -> None:
    assert pricing.table_date() == "2025-11-01"
    assert pricing.get_price("gpt-4o-mini") == pricing.Price(0.15, 0.6, cached_input=0.075)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4o", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("openai/gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4-turbo-0125", "gpt-4-turbo"),
    ],
)
def test_dated_and_prefixed_names_match_their_family(name: str, family: str) -> None:
    assert pricing.get_price(name) == pricing.get_price(family) is not None


def test_cost_prices_cache_and_reasoning_tokens_apart() -> None:
    # claude-sonnet-4-5: 1000 plain x 3 + 2000 reads x 0.3 + 500 writes x 3.75 + 100 out x 15
    usd = pricing.cost(
        "claude-sonnet-4-5-20250929",
        input_tokens=3500,
        output_tokens=100,
        cached_input_tokens=2000,
        cache_creation_input_tokens=500,
    )
    assert usd == pytest.approx((3000 + 600 + 1875 + 1500) / 1e6)


def test_set_price_wins_and_missing_rates_fall_back() -> None:
    pricing.set_price("gpt-4o", input=1.0, output=2.0, reasoning=4.0)
    usd = pricing.cost(
        "gpt-4o-2024-08-06", input_tokens=100, output_tokens=50, cached_input_tokens=40,
        reasoning_tokens=10,
    )  # fmt: skip
    assert usd == pytest.approx((60 * 1.0 + 40 * 1.0 + 40 * 2.0 + 10 * 4.0) / 1e6)


def test_drip_prices_file_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"my-model": {"input": 1, "output": 3}}}))
    monkeypatch.setenv("DRIP_PRICES", str(path))
    pricing.reset()
    assert pricing.cost("my-model-2025-01-01", input_tokens=10, output_tokens=10) == 4e-05
    assert pricing.get_price("gpt-4o") is not None  # the shipped table is still there


def test_a_bad_prices_file_names_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"m": {"input": 1, "outptu": 3}}}))
    monkeypatch.setenv("DRIP_PRICES", str(path))
    with pytest.raises(ValueError, match=r"DRIP_PRICES=.*'m'"):
        pricing.get_price("m")
    with pytest.raises(ValueError, match="non-negative"):
        pricing.set_price("m", input=-1, output=1)


def test_unknown_model_costs_none_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="drip"):
        for _ in range(3):
            assert pricing.cost("no-such-model", input_tokens=1, output_tokens=1) is None
    assert [r.getMessage().count("no-such-model") for r in caplog.records] == [1]
