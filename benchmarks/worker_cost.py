"""Where a tight loop's live delivery time goes: the caller's CPU and the delivery threads' CPU.

With live delivery the worker encodes and the sender posts *while* the caller runs, on the same
GIL, so a CPU-bound caller's wall time per call is about its own CPU plus the delivery threads'
CPU per record. This script measures each with thread CPU time (``time.thread_time_ns`` for
the caller, ``/proc/self/task/TID/stat`` for the ``drip-delivery`` worker and the
``drip-delivery-sender`` thread), which a busy host disturbs far less than wall time.

Each repeat is one run of N metered calls into a real ``drip serve`` (subprocess, SQLite) with
the default delivery settings, then a flush (its CPU counted for the delivery threads). The
floor prototype (see ``overhead.py``) and the bare function are timed by CPU in the same process;
the caller's and the floor's figures are over the bare function. Linux only
(``/proc``).

    python benchmarks/worker_cost.py
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections import deque
from typing import Any

import _bench

import drip

N = 100_000
REPEATS = 3


def thread_cpu_ns(name: str) -> int:
    """User + system CPU of the live threads called ``name`` (Linux ``/proc``)."""
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    total = 0
    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * tick
    return total


def bare(x: int) -> int:
    return x + 1


_CV: contextvars.ContextVar[int | None] = contextvars.ContextVar("floor", default=None)
_KEPT: deque[tuple[Any, ...]] = deque(maxlen=2048)


def floor(x: int) -> int:
    token = _CV.set(1)
    t0 = time.perf_counter_ns()
    try:
        result = bare(x)
    finally:
        t1 = time.perf_counter_ns()
        _CV.reset(token)
    _KEPT.append((bare, t0, t1, 1))
    return result


def cpu_per_call(fn: Any, n: int) -> float:
    t0 = time.thread_time_ns()
    for i in range(n):
        fn(i)
    return (time.thread_time_ns() - t0) / n


def main() -> int:
    args = _bench.arguments(__doc__.splitlines()[0])
    _bench.header("worker_cost.py", f"{REPEATS} repeats of {N:,} metered calls, live delivery")
    results = _bench.Results("worker_cost")
    rows = []
    with _bench.DripServer() as server:
        client = drip.Drip(api_key=server.key, base_url=server.url)
        customer = client.create_customer(external_customer_id="bench-worker-cost").id
        metered = client.metered(meter="bench.worker")(bare)
        for _ in range(REPEATS):
            bare_cpu = cpu_per_call(bare, N)
            floor_cpu = cpu_per_call(floor, N) - bare_cpu
            worker0, sender0 = thread_cpu_ns("drip-delivery"), thread_cpu_ns("drip-delivery-sender")
            wall0 = time.perf_counter_ns()
            with client.run(workflow="bench-worker-cost", customer_id=customer):
                caller = cpu_per_call(metered, N) - bare_cpu
            wall = (time.perf_counter_ns() - wall0) / N
            report = client.flush(120)
            if report.pending or report.failed:
                raise SystemExit(f"a flush did not deliver everything: {report}")
            worker = (thread_cpu_ns("drip-delivery") - worker0) / N
            sender = (thread_cpu_ns("drip-delivery-sender") - sender0) / N
            rows.append((floor_cpu, caller, worker, sender, wall))
        stats = client.stats()
        client.close()
    print()
    headers = ["floor CPU ns", "caller CPU ns/call over bare", "worker CPU ns/record"]
    headers += ["sender CPU ns/record", "caller wall ns/call"]
    title = "CPU per metered call (caller) and per record (delivery threads, incl. flush):"
    print(_bench.table(headers, [[_bench.fmt(v) for v in row] for row in rows], title=title))
    med = [_bench.median(col) for col in zip(*rows, strict=True)]
    results.check("caller CPU over bare / floor prototype CPU", med[1] / med[0], "x", "", None)
    results.check("worker CPU per record / floor prototype CPU", med[2] / med[0], "x", "", None)
    results.check("sender CPU per record / floor prototype CPU", med[3] / med[0], "x", "", None)
    results.check(
        "records lost", stats.dropped + stats.rejected + stats.refused + stats.pending, "", "0",
        not (stats.dropped or stats.rejected or stats.refused or stats.pending),
    )  # fmt: skip
    return results.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
