"""Instructions per metered call inside a run (delivery deferred), counted by valgrind.

Wall-clock ratios on a shared 2-core host move by ±30% from run to run; instruction counts do
not. This script runs one child process per case under ``valgrind --tool=callgrind`` and
reports instructions per call over the bare function for the peers' floor prototype (a
ContextVar set/reset, two ``perf_counter_ns``, one append to a bounded deque) and for
``@metered`` inside a run with delivery deferred (the worker never wakes during the loop; the
buffer is dropped before exit so the exit flush is not counted). Instructions are not time, but
the same code path counted twice is the same count twice.

    python benchmarks/hot_path_ir.py            # needs valgrind on PATH; ~2 minutes
    python benchmarks/hot_path_ir.py --otel     # also: inside an active OpenTelemetry SDK span

With ``--otel`` the same two cases run again with the OpenTelemetry SDK installed and the loop
inside one active span (``TracerProvider``, no processor), so the count includes reading the
current span and its id on every call (the bare function in that setting is the base).

Another version of drip can be counted with the same script: export it (``git archive COMMIT |
tar -x -C DIR``) and run ``PYTHONPATH=DIR python benchmarks/hot_path_ir.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from typing import Any

N = 40_000


def child(mode: str, n: int) -> None:
    from drip._config import resolve_settings

    try:
        from drip.instrument import Instrumentation
    except ImportError:  # before the core layout (commit 79b78ef and older)
        from drip._instrumentation import Instrumentation  # type: ignore[import-not-found,no-redef]

    perf = time.perf_counter_ns
    var: contextvars.ContextVar[int | None] = contextvars.ContextVar("floor", default=None)
    kept: deque[tuple[Any, ...]] = deque(maxlen=2048)

    def bare(x: int) -> int:
        return x + 1

    def floor(*a: Any, **k: Any) -> Any:
        token = var.set(1)
        t0 = perf()
        try:
            result = bare(*a, **k)
        finally:
            t1 = perf()
            var.reset(token)
        kept.append((bare, t0, t1, 1))
        return result

    settings = resolve_settings(
        api_key="sk_bench_000000", base_url="http://127.0.0.1:9", flush_interval=3600,
        max_batch_items=10**6, max_buffer=10**7, env={},
    )  # fmt: skip
    instr = Instrumentation(settings, sender=lambda body: None)  # type: ignore[arg-type,return-value]
    kind, _, otel = mode.partition("-")
    fn = {"bare": bare, "floor": floor, "drip": instr.metered("m")(bare)}[kind]
    span: Any = contextlib.nullcontext()
    if otel:
        from opentelemetry.sdk.trace import TracerProvider

        span = TracerProvider().get_tracer("bench").start_as_current_span("request")
    with span, instr.run("wf", customer_id="c"):
        fn(0)  # the first record starts the worker
        for i in range(n):
            fn(i)
    # the exit flush would encode them: not the caller's cost
    buffer = getattr(instr.delivery, "buffer", None)
    (instr.delivery._buf if buffer is None else buffer.q).clear()
    os._exit(0)


def count(mode: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--child", mode, str(n)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in out.stderr.splitlines() if "Collected" in x)
    return int(line.split()[-1])


def main() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("hot_path_ir.py needs valgrind on PATH")
    base = count("bare", N)
    floor = (count("floor", N) - base) / N
    drip = (count("drip", N) - base) / N
    print(f"instructions per call over bare, N={N:,} (callgrind)")
    print(f"floor prototype            {floor:8,.0f}")
    print(f"drip, delivery deferred    {drip:8,.0f}")
    print(f"drip / floor               {drip / floor:8.2f} x   (target <= 1.5 x, in time)")
    if "--otel" in sys.argv:
        base = count("bare-otel", N)
        drip = (count("drip-otel", N) - base) / N
        print(f"drip, in an active span    {drip:8,.0f}   (OpenTelemetry SDK installed)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
