"""``Rollup.metered`` (many metered events of one run and meter at once) sums exactly what
``Rollup.event`` sums one event at a time."""

from __future__ import annotations

import random

from drip.server.storage.rollups import Rollup

HOUR = "2025-01-01T10"


def _ts(minute: int, hour: str = HOUR) -> str:
    return f"{hour}:{minute:02d}:00.000000Z"


def _both(timestamps: list[str], quantities: list[float]) -> tuple[Rollup, Rollup]:
    one_by_one, grouped = Rollup(), Rollup()
    for ts, q in zip(timestamps, quantities, strict=True):
        one_by_one.event("run_1", "cus_1", "tokens", False, ts, q)
    grouped.metered("run_1", "cus_1", "tokens", timestamps, quantities)
    return one_by_one, grouped


def test_whole_quantities_in_one_hour() -> None:
    a, b = _both([_ts(m) for m in range(60)], [float(m) for m in range(60)])
    assert a.events == b.events
    (sums,) = b.events.values()
    assert sums[0] == 60 and sums[3] == sum(range(60))


def test_fractions_huge_values_ints_and_hours_fall_back_to_exact_sums() -> None:
    rng = random.Random(7)
    cases: list[tuple[list[str], list[float]]] = [
        ([_ts(1), _ts(2), _ts(3)], [0.1, 0.2, 1.0]),  # fractions: decimals, not floats
        ([_ts(1), _ts(2)], [1e15, 1e15]),  # whole, fine as floats
        ([_ts(1)] * 10, [2.0**52] * 10),  # whole, but the sum passes 2**53
        ([_ts(59), _ts(0, "2025-01-01T11"), _ts(5)], [1.0, 2.0, 3.0]),  # two hours
    ]
    for _ in range(50):
        n = rng.randint(1, 40)
        cases.append(
            (
                [_ts(rng.randint(0, 59), rng.choice([HOUR, "2025-01-01T11"])) for _ in range(n)],
                [rng.choice([1.0, 0.5, 3.0, 1e-7, 123456789.0]) for _ in range(n)],
            )
        )
    for timestamps, quantities in cases:
        a, b = _both(timestamps, quantities)
        assert a.events == b.events, (timestamps, quantities)
