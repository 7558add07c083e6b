"""Memory held per buffered event: what a metered call leaves in the delivery buffer until sent.

The worker is kept from sending: the client points at a loopback port with no server behind
it, and its flush interval is an hour with ``max_batch_items`` / ``max_buffer`` above N, so the
worker (started by the first record) sleeps through the measurement and every record stays
buffered. N metered calls inside one run are then measured two ways, each in a fresh client:

* ``tracemalloc``: traced memory after minus before (gc.collect() first), divided by N;
* RSS (``/proc/self/statm``), tracemalloc off: resident set after minus before, divided by N.
  RSS moves in pages and arenas, so it is the coarser of the two.

A breakdown of one record (its ``WIDTH`` deque slots, kept flat, and its integers; the
strings are shared per run and per meter) says where the bytes go. At the end the buffered records are discarded (``shutdown(0)``; the
drip logger is silenced for it).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
import tracemalloc

import _bench

import drip
from drip._records import WIDTH

N = 200_000
TARGET = 300  # bytes per buffered event


def bare(x: int) -> int:
    return x + 1


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def client(dead_url: str) -> drip.Drip:
    return drip.Drip(
        api_key="sk_bench_memory_0000",
        base_url=dead_url,
        flush_interval=3600,
        max_batch_items=N + 10,
        max_buffer=N + 10,
    )


def record(c: drip.Drip, n: int) -> None:
    fn = c.metered(meter="bench.memory")(bare)
    with c.run(workflow="bench-memory", customer_id="cus_bench_memory"):
        for i in range(n):
            fn(i)


def discard(c: drip.Drip) -> None:
    """Drop what is buffered (shutdown with no time to send)."""
    logger = logging.getLogger("drip")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        c.shutdown(0)
        deadline = time.monotonic() + 30
        while c.stats().pending and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker drops the records on its way out: wait for it
    finally:
        logger.setLevel(level)


def main() -> int:
    args = _bench.arguments(__doc__.splitlines()[0])
    _bench.header("memory.py", f"N = {N:,} buffered events (one run)")
    results = _bench.Results("memory")
    dead_url = f"http://127.0.0.1:{_bench.free_port()}"  # nothing listens there

    # warm up: the first record starts the worker thread, first calls allocate caches
    warm = client(dead_url)
    record(warm, 1_000)
    discard(warm)

    # RSS first, while the process is at its low-water mark (later phases free memory that
    # stays mapped, which a measurement after them would reuse without growing)
    c2 = client(dead_url)
    record(c2, 1)
    gc.collect()
    rss0 = rss_bytes()
    record(c2, N)
    gc.collect()
    rss1 = rss_bytes()
    stats2 = c2.stats()
    discard(c2)

    # tracemalloc
    c1 = client(dead_url)
    record(c1, 1)  # start the worker and build the metered wrapper's state
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    record(c1, N)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stats1 = c1.stats()
    # the last event (before the run end, which takes the last WIDTH elements), kept flat
    elements = list(c1._recorder.delivery.buffer.q)
    sample = tuple(elements[-2 * WIDTH : -WIDTH])
    discard(c1)

    per_event = traced / N
    rss_per_event = None if rss0 is None or rss1 is None else (rss1 - rss0) / N
    ints = [v for v in sample if isinstance(v, int) and not -5 <= v <= 256]
    parts = [
        (f"{WIDTH} deque slots (the record, flat)", 8 * WIDTH),
        (f"{len(ints)} integers (seq, t0, t1)", sum(sys.getsizeof(v) for v in ints)),
    ]
    print()
    print(
        _bench.table(
            ["measure", "value", "detail"],
            [
                ("buffered records (stats.pending)", f"{stats1.pending:,}", "N + 1 events, 2 runs"),
                ("tracemalloc growth", f"{traced:,} B", f"{per_event:,.1f} B/event"),
                (
                    "RSS growth",
                    "-" if rss_per_event is None else f"{rss_per_event * N:,.0f} B",
                    "-" if rss_per_event is None else f"{rss_per_event:,.1f} B/event",
                ),
                *[(f"  {name}", f"{size} B", "sys.getsizeof") for name, size in parts],
                ("  sum of the parts", f"{sum(s for _, s in parts)} B", "per event"),
            ],
            title="Memory per buffered event:",
        )
    )
    # record(c, 1) leaves 3 records (run start, event, run end), record(c, N) N + 2
    expected = 3 + N + 2
    held = stats1.pending == stats2.pending == expected
    if not held:
        print(f"PROBLEM: not everything stayed buffered: {stats1} / {stats2}")
    results.check(
        "tracemalloc bytes per buffered event",
        per_event,
        "B",
        f"<= {TARGET} B",
        per_event <= TARGET,
    )
    if rss_per_event is not None:
        results.check(
            "RSS bytes per buffered event",
            rss_per_event,
            "B",
            f"<= {TARGET} B",
            rss_per_event <= TARGET,
        )
    results.check(
        "every event held in the buffer", stats1.pending, "records", f"== {expected:,}", held
    )
    return results.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
