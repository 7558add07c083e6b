"""Cost of opening and closing a run: ``with client.run(...)`` and ``async with client.run(...)``.

Each case times N iterations of an empty-bodied run; the cost is the median ns per iteration
minus the median of the same loop with an empty body (sync) or in a coroutine (async). Cases
are interleaved (baseline, case, case, ..., baseline, ...), medians, as in overhead.py.

* ``with client.run(...)``: build the ``RunContext``, enter, exit (what user code writes);
* ``client.run(...)`` alone: only building the ``RunContext`` (part of the line above);
* ``with ctx``: one ``RunContext`` built before the loop, entered and exited N times.

Two clients point at the same ``drip serve`` subprocess (temporary SQLite file), as in
overhead.py: "delivery live" (default settings: the worker ships records while the loop runs,
on the same GIL) and "delivery deferred" (``flush_interval=3600``, ``max_batch_items=100,000``:
the worker sleeps through the loop). Every repeat's N runs (2 records each: run start and run
end) are flushed after the timed loop (not timed), so the buffer never fills. At the end,
``stats()`` must show every record sent and nothing dropped, and sampled runs must be COMPLETED
on the server.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable

import _bench

import drip

REPEATS = 5
N = 5_000  # runs per repeat
TARGET_NS = 5_000
WORKFLOW = "bench-run-cost"

perf = time.perf_counter_ns


class NullContext:
    """The cheapest class-based context manager: the floor of a ``with``."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Client:
    """One drip client, its loops, and the runs it opened (to check them at the end)."""

    def __init__(self, client: drip.Drip, customer: str, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.customer = customer
        self.loop = loop
        self.runs = 0
        self.sample: list[str] = []

    def _delivered(self, run: drip.Run, n: int) -> None:
        self.runs += n
        self.sample.append(run.id)  # the last run of each repeat, checked on the server
        report = self.client.flush(120)
        if report.pending or report.failed:
            raise SystemExit(f"a flush did not deliver everything: {report}")

    def with_new(self) -> int:
        client, customer = self.client, self.customer
        t0 = perf()
        for _ in range(N):
            with client.run(workflow=WORKFLOW, customer_id=customer) as run:
                pass
        elapsed = perf() - t0
        self._delivered(run, N)
        return elapsed

    def build_only(self) -> int:
        client, customer = self.client, self.customer
        t0 = perf()
        for _ in range(N):
            client.run(workflow=WORKFLOW, customer_id=customer)
        return perf() - t0

    def with_reused(self) -> int:
        context = self.client.run(workflow=WORKFLOW, customer_id=self.customer)
        t0 = perf()
        for _ in range(N):
            with context as run:
                pass
        elapsed = perf() - t0
        self._delivered(run, N)
        return elapsed

    async def _async_new(self) -> tuple[int, drip.Run]:
        client, customer = self.client, self.customer
        t0 = perf()
        for _ in range(N):
            async with client.run(workflow=WORKFLOW, customer_id=customer) as run:
                pass
        return perf() - t0, run

    def async_with_new(self) -> int:
        elapsed, run = self.loop.run_until_complete(self._async_new())
        self._delivered(run, N)
        return elapsed

    def check(self, name: str) -> tuple[str, bool]:
        self.client.flush(120)
        stats = self.client.stats()
        statuses = {self.client.get_run(r).status.value for r in random.sample(self.sample, 5)}
        expected = 2 * self.runs
        ok = (
            stats.recorded == expected
            and stats.sent + stats.duplicates == expected
            and not (stats.dropped or stats.rejected or stats.refused or stats.pending)
            and statuses == {"COMPLETED"}
        )
        return (
            f"{name}: {self.runs:,} runs -> recorded {stats.recorded:,} (expected {expected:,}), "
            f"sent {stats.sent:,}, dropped {stats.dropped}, rejected {stats.rejected}, pending "
            f"{stats.pending}; 5 sampled runs on the server: {sorted(statuses)}"
        ), ok


def main() -> int:
    args = _bench.arguments(__doc__.splitlines()[0])
    _bench.header("run_cost.py", f"{REPEATS} interleaved repeats of {N:,} runs, medians")
    results = _bench.Results("run_cost")
    loop = asyncio.new_event_loop()

    def empty() -> int:
        t0 = perf()
        for _ in range(N):
            pass
        return perf() - t0

    def null() -> int:
        cm = NullContext()
        t0 = perf()
        for _ in range(N):
            with cm:
                pass
        return perf() - t0

    async def aempty() -> int:
        t0 = perf()
        for _ in range(N):
            pass
        return perf() - t0

    with _bench.DripServer() as server:
        print(f"server: drip serve subprocess at {server.url}, SQLite {server.db}")
        live_client = drip.Drip(api_key=server.key, base_url=server.url)
        deferred_client = drip.Drip(
            api_key=server.key, base_url=server.url, flush_interval=3600, max_batch_items=100_000
        )
        customer = live_client.create_customer(external_customer_id="bench-run-cost").id
        live = Client(live_client, customer, loop)
        deferred = Client(deferred_client, customer, loop)

        cases: list[tuple[str, Callable[[], int]]] = [
            ("empty loop", empty),
            ("with NullContext()", null),
            ("client.run(...) alone", deferred.build_only),
            ("with client.run(...), live", live.with_new),
            ("with client.run(...), deferred", deferred.with_new),
            ("with ctx, deferred", deferred.with_reused),
            ("empty coroutine loop", lambda: loop.run_until_complete(aempty())),
            ("async with client.run(...), live", live.async_with_new),
            ("async with client.run(...), deferred", deferred.async_with_new),
        ]
        raw = _bench.interleave(cases, REPEATS)
        ns = {name: _bench.median(times) / N for name, times in raw.items()}
        checks = [live.check("delivery live"), deferred.check("delivery deferred")]
        live_client.close()
        deferred_client.close()
    loop.close()

    sync_base, async_base = ns["empty loop"], ns["empty coroutine loop"]
    rows = [
        (name, "async" if name.startswith("async") else "sync", ns[name])
        for name in ns
        if name not in ("empty loop", "empty coroutine loop")
    ]
    cost = {name: t - (async_base if kind == "async" else sync_base) for name, kind, t in rows}
    print()
    print(
        _bench.table(
            ["case", "kind", "ns / iteration", "cost ns"],
            [(name, kind, _bench.fmt(t, 1), _bench.fmt(cost[name], 1)) for name, kind, t in rows],
            title=(
                f"Run enter + exit, ns per run (baselines: empty loop {sync_base:.1f} ns, "
                f"empty coroutine loop {async_base:.1f} ns):"
            ),
        )
    )
    print()
    for line, _ in checks:
        print(line)

    for name in (
        "with client.run(...), deferred",
        "with client.run(...), live",
        "async with client.run(...), deferred",
        "async with client.run(...), live",
    ):
        results.check(name, cost[name], "ns", f"<= {TARGET_NS:,} ns", cost[name] <= TARGET_NS)
    for name in ("client.run(...) alone", "with ctx, deferred", "with NullContext()"):
        results.check(name, cost[name], "ns", "", None)
    clean = all(ok for _, ok in checks)
    results.check("records lost or miscounted", int(not clean), "", "0", clean)
    return results.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
