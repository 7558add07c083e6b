"""µs per ``Run.event(...)``: without metadata, with the four fields ``DripMiddleware`` writes
(``status_code``, ``route``, ``method``, ``duration_ms``), and the same with the metadata check
forced through the full path (deep checks plus a JSON encode: what every call paid before the
flat fast path), interleaved in one run. Also ``metadata_problem`` alone, fast vs full.

The client points at a port nobody listens on with an hour's flush interval and buffer bounds
above the total, so delivery never runs during the loops: this is the caller's own cost.

    python benchmarks/run_event.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import _bench

import drip
from drip import _checks

REPEATS = 7
N = 20_000
META = {"status_code": 200, "route": "/items/{item_id}", "method": "GET", "duration_ms": 1.234}

perf = time.perf_counter_ns


def timed(body: Callable[[], object], n: int = N) -> Callable[[], int]:
    def case() -> int:
        start = perf()
        for _ in range(n):
            body()
        return perf() - start

    return case


def main() -> None:
    args = _bench.arguments(__doc__ or "")
    _bench.header("run_event", f"N = {N:,} calls per repeat, {REPEATS} repeats interleaved")
    total = N * REPEATS * 3 + 100
    client = drip.Drip(
        api_key="sk_bench_run_event_0000",
        base_url=f"http://127.0.0.1:{_bench.free_port()}",
        flush_interval=3600,
        max_batch_items=total,
        max_buffer=total,
    )
    fast = _checks.metadata_problem
    full = _checks._full_metadata_problem

    def forced_full() -> None:
        _checks.metadata_problem = full
        try:
            run.event("request", 1, metadata=META)
        finally:
            _checks.metadata_problem = fast

    with client.run("bench-run-event", customer_id="cus_bench") as run:
        cases = [
            ("Run.event, no metadata", timed(lambda: run.event("request", 1))),
            ("Run.event, 4 fields", timed(lambda: run.event("request", 1, metadata=META))),
            ("Run.event, 4 fields, full check (before)", timed(forced_full)),
            ("metadata_problem, fast path", timed(lambda: fast(META))),
            ("metadata_problem, full check (before)", timed(lambda: full(META))),
        ]
        out = _bench.interleave(cases, REPEATS)
    stats = client.stats() if hasattr(client, "stats") else None
    client.close() if hasattr(client, "close") else None
    us = {name: statistics.median(v) / N / 1000 for name, v in out.items()}
    rows = [(name, f"{value:.2f}") for name, value in us.items()]
    print(_bench.table(["case", "µs/call (median)"], rows))
    bare = us["Run.event, no metadata"]
    after = us["Run.event, 4 fields"] - bare
    before = us["Run.event, 4 fields, full check (before)"] - bare
    print(
        f"metadata's share of Run.event: {after:.2f} µs now vs {before:.2f} µs with the full "
        f"check ({before / after if after > 0 else float('inf'):.1f}x); "
        f"check alone {us['metadata_problem, full check (before)'] / us['metadata_problem, fast path']:.1f}x faster"
    )
    if stats is not None:
        print(f"client stats: {stats}")
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump(us, fh, indent=2)


if __name__ == "__main__":
    main()
