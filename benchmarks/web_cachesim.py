"""Where a metered FastAPI request's extra time goes: instructions *and* cache misses, per request.

``web_middleware.py --mode ir-http`` counts instructions, which is deterministic but blind to
why the middleware costs more by time than by count. This runs FastAPI called directly (the
``asgi`` shape: ``await app(scope, receive, send)`` in a loop) under
``valgrind --tool=cachegrind --cache-sim=yes`` for three cases, each twice (300 and 1,300
requests; the difference divided by 1,000, so start-up cancels out):

* ``bare``: the endpoint alone;
* ``pass``: a pure ASGI pass-through layer (the floor of any middleware);
* ``drip``: ``DripMiddleware`` metering every request, delivery deferred (the records held, as
  in ``web_middleware.py``'s ``drip-deferred``), the customer read from a header.

It prints instructions, simulated L1 instruction misses and L1 data misses per request, and the
functions whose L1 instruction misses grow most from ``pass`` to ``drip`` (``cg_annotate``).
The simulated caches are valgrind's model of this host's (32 KiB L1i here): counts, not time.

    python benchmarks/web_cachesim.py          # ~4 minutes; needs valgrind
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import _bench

CASES = ("bare", "pass", "drip")
COUNTS = (300, 1_300)
CUSTOMER = b"cus_0123456789abcdef0123456789abcdef"


def build(case: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    if case == "pass":

        class Pass:
            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                await self.app(scope, receive, send)

        app.add_middleware(Pass)
    elif case == "drip":
        from drip.integrations.fastapi import DripMiddleware

        import drip

        # nothing is sent: the worker sleeps through the requests, the process ends by _exit
        drip.configure(api_key="sk_test_0123456789abcdef0123", base_url="http://127.0.0.1:9",
                       flush_interval=3600, max_batch_items=10_000_000, max_buffer=10_000_000)  # fmt: skip
        app.add_middleware(DripMiddleware, customer=lambda request: request.headers["x-customer"])
    return app


def serve_n(case: str, n: int) -> None:
    app = build(case)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/items/7", "raw_path": b"/items/7", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"bench"), (b"x-customer", CUSTOMER)],
    }  # fmt: skip
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: Any) -> None:
        pass

    async def loop() -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    asyncio.run(loop())
    sys.stdout.flush()
    os._exit(0)  # no exit flush: the deferred records go nowhere


def simulate(case: str, n: int, out: str) -> dict[str, int]:
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=yes", f"--cachegrind-out-file={out}",
         sys.executable, __file__, "--case", case, "--n", str(n)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    totals = {}
    for key, label in (("Ir", "I   refs"), ("I1", "I1  misses"), ("D1", "D1  misses")):
        line = next(x for x in done.stderr.splitlines() if label in x)
        totals[key] = int(line.split(":")[1].split()[0].replace(",", ""))
    return totals


def per_function(diff: str) -> dict[str, list[int]]:
    """{function: [Ir, I1 misses]} of a ``cg_diff`` file."""
    text = subprocess.run(
        ["cg_annotate", "--show=Ir,I1mr", "--sort=I1mr", "--threshold=0.001", diff],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    row = re.compile(r"\s*(-?[\d,]+)\s+(?:\([^)]*\)\s+)?(-?[\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$")
    started = False
    for line in text.splitlines():
        if "file:function" in line:
            started = True
            continue
        match = row.match(line) if started else None
        if match:
            name = match.group(3).rsplit("/", 1)[-1]
            found[name][0] += int(match.group(1).replace(",", ""))
            found[name][1] += int(match.group(2).replace(",", ""))
    return found


def main() -> int:
    if "--case" in sys.argv:
        serve_n(sys.argv[sys.argv.index("--case") + 1], int(sys.argv[sys.argv.index("--n") + 1]))
    for tool in ("valgrind", "cg_diff", "cg_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed on PATH (apt-get install valgrind)")
    _bench.header("web_cachesim", "FastAPI called directly, cachegrind --cache-sim=yes")
    few, many = COUNTS
    per: dict[str, dict[str, float]] = {}
    functions: dict[str, dict[str, list[int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            outs = [os.path.join(tmp, f"{case}.{n}") for n in COUNTS]
            a, b = (simulate(case, n, out) for n, out in zip(COUNTS, outs, strict=True))
            per[case] = {k: (b[k] - a[k]) / (many - few) for k in a}
            diff = os.path.join(tmp, f"{case}.diff")
            with open(diff, "w") as f:
                subprocess.run(["cg_diff", *outs], stdout=f, check=True)
            functions[case] = per_function(diff)
    rows = [(case, _bench.fmt(v["Ir"]), _bench.fmt(v["I1"]), _bench.fmt(v["D1"]),
             f"{per['bare']['Ir'] / v['Ir']:.1%}", f"{per['bare']['I1'] / v['I1']:.1%}")
            for case, v in per.items()]  # fmt: skip
    print(_bench.table(["case", "instructions", "L1i misses", "L1d misses", "bare/case Ir",
                        "bare/case L1i"], rows, title="per request (simulated caches)"))  # fmt: skip
    grown = functions["drip"]
    floor = functions["pass"]
    rows2 = sorted(((grown[k][1] - floor.get(k, [0, 0])[1]) / (many - few),
                    (grown[k][0] - floor.get(k, [0, 0])[0]) / (many - few), k) for k in grown)  # fmt: skip
    top = [(name, _bench.fmt(ir), _bench.fmt(i1, 1)) for i1, ir, name in reversed(rows2[-15:])]
    print()
    print(_bench.table(["function (file:function)", "instructions", "L1i misses"], top,
                       title="drip over pass: where L1i misses grow most, per request"))  # fmt: skip
    extra = per["drip"]["I1"] - per["pass"]["I1"]
    ours = sum(grown[k][1] - floor.get(k, [0, 0])[1] for k in grown if "_speedups" in k)
    print(
        f"\ndrip over pass: {extra:,.0f} more L1i misses per request, "
        f"{ours / (many - few):,.0f} of them in drip's compiled code"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
