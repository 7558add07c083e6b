"""Requests/s of a minimal FastAPI endpoint: bare, with drip's ``DripMiddleware``, and with
sentry-python's / logfire's FastAPI integrations when they are installed, in the same run.

Issue 10's target: with ``DripMiddleware`` the endpoint keeps >= 95% of its bare requests/s.
It is judged in ``http`` mode, the way a user measures a web service: a real server under a
load generator. ``asgi`` mode is reported too, as the worst case for any middleware.

* ``http``: each case's app is served by uvicorn (one worker; uvloop and httptools when
  installed, as ``uvicorn[standard]`` deploys it) in its own process pinned to one core, and
  loaded by ``wrk`` (C, epoll; ``apt-get install wrk``) pinned to another core, keep-alive
  connections, a warm-up, then a timed run. Measured per run: requests/s (wrk), the app's CPU
  seconds (``/proc``), so also requests per CPU-second of the app (what one saturated core
  serves, less sensitive to other processes stealing the core), the CPU share of wrk and of
  the ``drip serve`` process. A ``raw`` case (a bare ASGI callable, no framework) shows wrk
  drives the server much faster than FastAPI can answer: the load generator is not the limit.
* ``asgi``: the app called directly, ``await app(scope, receive, send)`` in a loop, requests
  per CPU-second of the process (every thread: drip's delivery worker included). No server, no
  socket: the framework and the middleware are all that is timed.

Each case runs in its own process (sentry and logfire patch Starlette process-wide), cases
interleaved (bare, drip, ..., bare, drip, ...), medians of the repeats, all repeats printed.

drip's cases meter every request for a customer (one run: start, one ``api_calls`` event, end):
``drip`` delivers live to a ``drip serve`` subprocess (SQLite) while the requests run, pinned
with wrk, off the app's core; ``drip-deferred`` holds the records until the timed run is over
(the middleware's own cost). Every drip run must end with all records sent and none dropped,
and the server must hold exactly one ``api_calls`` event per request the app served (checked
after every run). ``sentry`` traces every request (``traces_sample_rate=1.0``) into a transport
that drops the envelopes; ``logfire`` sends nothing (``send_to_logfire=False``).

    python benchmarks/web_middleware.py                 # both modes (~6 minutes)
    python benchmarks/web_middleware.py --mode http --repeats 7 --seconds 10
    python benchmarks/web_middleware.py --endpoint sync      # a ``def`` endpoint (thread pool)

``ir`` and ``ir-http`` count instructions per request under callgrind (deterministic, so they
hold on a noisy host): ``ir`` calls the app directly, ``ir-http`` serves it with uvicorn as
``http`` does and counts only while 1,000 requests are answered on one keep-alive connection.

``--before DIR`` adds ``drip@before`` and ``drip-deferred@before``: the same cases with an older
``drip`` (a folder holding its ``drip/`` package, ``integrations/`` copied to
``drip/integrations``) first on ``PYTHONPATH``, interleaved with this tree's, for an A/B::

    git archive a48bc82 drip integrations | tar -x -C /tmp/old && mv /tmp/old/integrations /tmp/old/drip/
    python benchmarks/web_middleware.py --mode http --before /tmp/old
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import _bench

TARGET = 0.95
CASES = ["bare", "drip", "drip-deferred", "sentry", "logfire"]
ASGI_N = 4_000
#: requests of the two callgrind counts in ir mode
IR_REQUESTS = (200, 1_200)
#: requests counted in ir-http mode (after a warm-up of IR_HTTP_WARMUP), one keep-alive connection
IR_HTTP_REQUESTS = 1_000
IR_HTTP_WARMUP = 300
CONNECTIONS = 32
WARMUP_SECONDS = 2
TICKS = os.sysconf("SC_CLK_TCK")
#: ``--before``: the folder of the older drip that the ``@before`` cases run
BEFORE: str | None = None
SUFFIX = "@before"
#: ``--endpoint``, handed to each case's process: ``async`` (``async def``) or ``sync`` (``def``)
ENDPOINT_ENV = "DRIP_BENCH_ENDPOINT"


def child(case: str) -> tuple[str, dict[str, str] | None]:
    """The case a child process runs for ``case``, and its environment (None: this one's)."""
    if not case.endswith(SUFFIX):
        return case, None
    assert BEFORE is not None
    return case[: -len(SUFFIX)], {**os.environ, "PYTHONPATH": BEFORE}


def installed(case: str) -> bool:
    """Whether a peer's case can run (logfire's FastAPI part is its ``[fastapi]`` extra)."""
    modules = {
        "sentry": ["sentry_sdk"],
        "logfire": ["logfire", "opentelemetry.instrumentation.fastapi"],
    }
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules.get(case, []))
    except ModuleNotFoundError:  # a parent package of a dotted name is missing
        return False


# -- one case, in its own process ----------------------------------------------------------


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The fastest ASGI app there is: what the server and wrk cost without a framework."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"item":7}'})


def build_app(case: str, url: str, key: str, hits: list[int]) -> Any:
    """The app of ``case``: one endpoint, plus what the case adds."""
    if case == "raw":
        return raw_app
    if case == "sentry":
        import sentry_sdk
        from sentry_sdk.transport import Transport

        class Drop(Transport):
            def capture_envelope(self, envelope: Any) -> None:
                pass

        sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", traces_sample_rate=1.0, transport=Drop)
    from fastapi import FastAPI

    app = FastAPI()

    if os.environ.get(ENDPOINT_ENV) == "sync":  # FastAPI runs it in its thread pool

        @app.get("/items/{item_id}")
        def item_sync(item_id: int) -> dict[str, int]:
            hits[0] += 1
            return {"item": item_id}

    else:

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            hits[0] += 1  # every case counts: drip's are checked against the server's count
            return {"item": item_id}

    if case.startswith("drip"):
        from drip.integrations.fastapi import DripMiddleware

        import drip

        if case == "drip-deferred":  # the worker sleeps through the timed requests
            drip.configure(api_key=key, base_url=url, flush_interval=3600,
                           max_batch_items=10_000_000, max_buffer=10_000_000)  # fmt: skip
        else:
            drip.configure(api_key=key, base_url=url)
        app.add_middleware(DripMiddleware, customer=lambda request: request.headers["x-customer"])
    elif case == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False)
        logfire.instrument_fastapi(app)
    return app


async def drive_asgi(app: Any, customer: str, n: int) -> float:
    """Requests per CPU-second of this process, calling the app directly."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/items/7", "raw_path": b"/items/7", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"bench"), (b"x-customer", customer.encode())],
    }  # fmt: skip
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(300):  # warm up
        await app(dict(scope), receive, send)
    t0 = time.process_time()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return n / (time.process_time() - t0)


def serve(app: Any) -> None:
    """Serve ``app`` with uvicorn on a loopback port until a line arrives on stdin."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)

    def stop_on_stdin() -> None:
        sys.stdin.readline()
        server.should_exit = True

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    config.load()  # resolves loop="auto" / http="auto": say what was picked
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = config.http_protocol_class.__name__
    print(json.dumps({"port": sock.getsockname()[1], "server": f"uvicorn {loop} {http}"}),
          flush=True)  # fmt: skip
    server.run(sockets=[sock])
    sock.close()


def run_case(args: argparse.Namespace) -> None:
    hits = [0]
    app = build_app(args.case, args.url, args.key, hits)
    answer: dict[str, Any] = {}
    if args.mode == "ir":  # counted by callgrind from outside: requests only, then leave
        asyncio.run(drive_asgi(app, args.customer, args.n))
        if args.case.startswith("drip"):  # the exit flush would encode them: not the request's
            from drip._default import default_recorder

            recorder = default_recorder()
            assert recorder is not None
            recorder.lane.q.clear()  # type: ignore[attr-defined]
        os._exit(0)
    if args.mode == "asgi":
        answer["rps"] = asyncio.run(drive_asgi(app, args.customer, ASGI_N))
    else:
        serve(app)
    answer["hits"] = hits[0]
    if args.case.startswith("drip"):
        import drip

        drip.flush(120)
        stats = drip.stats()
        answer["drip"] = {"recorded": stats.recorded, "sent": stats.sent,
                          "dropped": stats.dropped}  # fmt: skip
    print(json.dumps(answer), flush=True)


# -- the load (http mode) ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cores() -> tuple[str, str]:
    """(the app's core, the load's core): the app alone on one, wrk and drip serve on another."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        raise SystemExit("http mode needs 2 cores: one for the app, one for the load")
    return str(available[0]), str(available[1])


def wrk(port: int, customer: str, seconds: int, load_core: str) -> tuple[int, float, float]:
    """(requests answered, their seconds, wrk's CPU seconds) of one wrk run on ``load_core``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["taskset", "-c", load_core, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s",
         "--timeout=60s", "-H", f"x-customer: {customer}", f"http://127.0.0.1:{port}/items/7"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if match is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk did not run cleanly:\n{out}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(3)]
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return int(match.group(1)), float(match.group(2)) * scale, spent


def stop_app(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Ask a served app to stop (a line on stdin); what it says at exit (``run_case``)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    answer: dict[str, Any] = json.loads(proc.stdout.readline())
    return answer


def ended(proc: subprocess.Popen[str], case: str, timeout: float) -> None:
    """Wait for a served app to end; it must end cleanly."""
    assert proc.stdin is not None
    proc.stdin.close()
    if proc.wait(timeout) != 0:
        raise RuntimeError(f"the {case} app exited with {proc.returncode}")


def http_run(args: argparse.Namespace, case: str, customer: str, server: Any) -> dict[str, Any]:
    """One case served on the app's core and loaded from the other: what wrk and /proc saw."""
    app_core, load_core = cores()
    name, env = child(case)
    proc = subprocess.Popen(
        ["taskset", "-c", app_core, sys.executable, __file__, "--case", name, "--mode", "http",
         "--url", server.url, "--key", server.key, "--customer", customer],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = json.loads(proc.stdout.readline())
        wrk(ready["port"], customer, WARMUP_SECONDS, load_core)
        app0, drip0 = cpu_seconds(proc.pid), cpu_seconds(server.pid)
        requests, seconds, wrk_cpu = wrk(ready["port"], customer, args.seconds, load_core)
        app_cpu = cpu_seconds(proc.pid) - app0
        drip_cpu = cpu_seconds(server.pid) - drip0
        answer = stop_app(proc)
    finally:
        ended(proc, case, 180)
    return {
        "server": ready["server"], "rps": requests / seconds, "per_cpu": requests / app_cpu,
        "app_cpu": app_cpu / seconds, "wrk_cpu": wrk_cpu / seconds,
        "drip_cpu": drip_cpu / seconds, "hits": answer["hits"], "drip": answer.get("drip"),
    }  # fmt: skip


def asgi_run(case: str, customer: str, server: Any) -> dict[str, Any]:
    name, env = child(case)
    out = subprocess.run(
        [sys.executable, __file__, "--case", name, "--mode", "asgi", "--url", server.url,
         "--key", server.key, "--customer", customer],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    answer: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


def instructions(case: str, n: int, server: Any) -> int:
    """Instructions (callgrind) of a process serving ``n`` requests of ``case`` directly."""
    name, env = child(case)
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--case", name, "--mode", "ir", "--n", str(n), "--url", server.url,
         "--key", server.key, "--customer", "cus_0123456789abcdef0123456789abcdef"],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    line = next(x for x in out.stderr.splitlines() if "Collected" in x)
    return int(line.split()[-1])


def ir_run(case: str, server: Any) -> dict[str, Any]:
    """Instructions per request: the difference of two counts, so start-up cancels out."""
    few, many = IR_REQUESTS
    per = (instructions(case, many, server) - instructions(case, few, server)) / (many - few)
    return {"ir": per, "rps": 1e9 / per}  # "rps": per billion instructions, for the table


def ir_http_run(case: str, customer: str, server: Any) -> dict[str, Any]:
    """Instructions per request of ``case`` served by uvicorn, as in ``http`` mode, under
    callgrind with counting on only while ``IR_HTTP_REQUESTS`` requests are answered (after a
    warm-up), sent one after another on one keep-alive connection: the server's and the
    framework's own work included, start-up and the exit flush left out."""
    import http.client
    import tempfile

    name, env = child(case)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--case", name, "--mode", "http", "--url", server.url,
             "--key", server.key, "--customer", customer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            port = json.loads(proc.stdout.readline())["port"]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

            def load(n: int) -> None:
                for _ in range(n):
                    connection.request("GET", "/items/7", headers={"x-customer": customer})
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200, response.status

            load(IR_HTTP_WARMUP)
            control = ["callgrind_control", "-i"]
            subprocess.run([*control, "on", str(proc.pid)], check=True, capture_output=True)
            load(IR_HTTP_REQUESTS)
            subprocess.run([*control, "off", str(proc.pid)], check=True, capture_output=True)
            connection.close()
            answer = stop_app(proc)
        finally:
            ended(proc, case, 600)
        with open(out) as counts:
            total = next(int(line.split()[1]) for line in counts if line.startswith("totals:"))
    per = total / IR_HTTP_REQUESTS
    return {"ir": per, "rps": 1e9 / per, "hits": answer["hits"], "drip": answer.get("drip")}


# -- the comparison ------------------------------------------------------------------------


class Stored:
    """What the drip server must hold: one ``api_calls`` event per request served, per case."""

    def __init__(self, server: Any) -> None:
        import drip

        self.client = drip.Drip(api_key=server.key, base_url=server.url)
        self.expected: dict[str, int] = {}

    def customer(self, case: str) -> str:
        return self.client.create_customer(external_customer_id=f"bench-web-{case}").id

    def check(self, customer: str, answer: dict[str, Any]) -> None:
        stats = answer.get("drip")
        if stats is None:
            return
        assert stats["sent"] == stats["recorded"] and not stats["dropped"], stats
        self.expected[customer] = self.expected.get(customer, 0) + answer["hits"]
        meters = self.client.get_usage_summary(customer_id=customer, meter="api_calls").meters
        stored = meters[0].run_events if meters else 0
        assert stored == self.expected[customer], (stored, self.expected[customer])

    def close(self) -> None:
        self.client.close()


def compare(
    args: argparse.Namespace, mode: str, cases: list[str], server: Any, stored: Stored
) -> dict[str, list[dict[str, Any]]]:
    customers = {case: stored.customer(case) for case in cases}
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            if mode == "http":
                answer = http_run(args, case, customers[case], server)
            elif mode == "ir":
                answer = ir_run(case, server)
            elif mode == "ir-http":
                answer = ir_http_run(case, customers[case], server)
            else:
                answer = asgi_run(case, customers[case], server)
            stored.check(customers[case], answer)
            runs[case].append(answer)
    return runs


def report(mode: str, runs: dict[str, list[dict[str, Any]]], results: _bench.Results) -> None:
    bare = _bench.median([r["rps"] for r in runs["bare"]])
    rows = []
    for case, answers in runs.items():
        rps = [r["rps"] for r in answers]
        row = [case, _bench.fmt(_bench.median(rps)), f"{_bench.median(rps) / bare:.1%}"]
        if mode == "http":
            per_cpu = _bench.median([r["per_cpu"] for r in answers])
            per_cpu_bare = _bench.median([r["per_cpu"] for r in runs["bare"]])
            row += [_bench.fmt(per_cpu), f"{per_cpu / per_cpu_bare:.1%}",
                    f"{_bench.median([r['app_cpu'] for r in answers]):.0%}",
                    f"{_bench.median([r['wrk_cpu'] for r in answers]):.0%}",
                    f"{_bench.median([r['drip_cpu'] for r in answers]):.0%}"]  # fmt: skip
        row.append(" ".join(_bench.fmt(v) for v in rps))
        rows.append(row)
    if mode in ("ir", "ir-http"):
        base = _bench.median([r["ir"] for r in runs["bare"]])
        rows = [(case, _bench.fmt(_bench.median([r["ir"] for r in answers])),
                 f"{base / _bench.median([r['ir'] for r in answers]):.1%}")
                for case, answers in runs.items()]  # fmt: skip
        print()
        where = "FastAPI called directly" if mode == "ir" else "served by uvicorn"
        print(_bench.table(["case", "instructions per request", "bare / case"], rows,
                           title=f"{mode}: instructions per request (callgrind, {where}, "
                                 "delivery deferred)"))  # fmt: skip
        for case in runs:
            if case != "bare":
                share = base / _bench.median([r["ir"] for r in runs[case]]) * 100
                results.check(f"{mode}: bare instructions / {case} instructions per request",
                              share, "%", "", None)  # fmt: skip
        return
    headers = ["case", "req/s (median)", "of bare"]
    if mode == "http":
        headers += ["req/CPU-s", "of bare", "app CPU", "wrk CPU", "drip serve CPU"]
    print()
    title = f"{mode}: requests/s" + (f" ({runs['bare'][0]['server']})" if mode == "http" else "")
    print(_bench.table([*headers, "repeats (req/s)"], rows, title=title))
    if mode == "http":
        busy = min(r["app_cpu"] for answers in runs.values() for r in answers)
        if busy < 0.9:
            print(f"WARNING: an app had only {busy:.0%} of its core in some run: other processes "
                  "took the rest, so req/s measured the host's load, not the app; req/CPU-s "
                  "(requests per CPU-second of the app) is the figure to read on this host")  # fmt: skip
    judged = mode == "http"
    why = "the target's mode" if judged else "worst case, informative"
    for case, label in (("drip-deferred", "delivery deferred"), ("drip", "delivery live")):
        ratio = _bench.median([r["rps"] for r in runs[case]]) / bare
        results.check(f"{mode}: DripMiddleware req/s, share of bare ({label}; {why})",
                      ratio * 100, "%", f">= {TARGET:.0%}" if judged else "",
                      ratio >= TARGET if judged else None)  # fmt: skip
    if mode == "http":
        if "raw" in runs:
            ratio = _bench.median([r["rps"] for r in runs["raw"]]) / bare
            results.check("http: raw ASGI app req/s over bare FastAPI (wrk is not the limit)",
                          ratio, "x", "", None)  # fmt: skip
        for case in ("drip-deferred", "drip"):
            per_cpu = _bench.median([r["per_cpu"] for r in runs[case]])
            base = _bench.median([r["per_cpu"] for r in runs["bare"]])
            results.check(f"http: DripMiddleware req per app CPU-s, share of bare ({case})",
                          per_cpu / base * 100, "%", "", None)  # fmt: skip
    for peer in ("sentry", "logfire"):
        if peer in runs:
            share = _bench.median([r["rps"] for r in runs[peer]]) / bare * 100
            results.check(f"{mode}: {peer} FastAPI req/s, share of bare", share, "%", "", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--mode",
        choices=["asgi", "http", "ir", "ir-http", "both"],
        default="both",
        help="both = asgi and http; ir / ir-http = instructions per request (valgrind), the "
        "app called directly / served by uvicorn",
    )
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5, help="each timed wrk run")
    parser.add_argument("--cases", help="comma-separated subset of: raw," + ",".join(CASES))
    parser.add_argument("--before", metavar="DIR", help="an older drip to compare (see above)")
    parser.add_argument(
        "--endpoint",
        choices=["async", "sync"],
        default="async",
        help="the endpoint: async def (the default: the cheapest FastAPI request, the hardest "
        "case for a middleware), or def, which FastAPI runs in its thread pool",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--customer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args)
        return 0

    os.environ[ENDPOINT_ENV] = args.endpoint  # each case's process reads it
    wanted = args.cases.split(",") if args.cases else CASES
    cases = [c for c in wanted if c != "raw" and installed(c)]
    if args.before:
        global BEFORE
        BEFORE = os.path.abspath(args.before)
        at = cases.index("drip-deferred") + 1 if "drip-deferred" in cases else len(cases)
        cases[at:at] = [f"{c}{SUFFIX}" for c in ("drip", "drip-deferred") if c in cases]
    modes = ["asgi", "http"] if args.mode == "both" else [args.mode]
    if "http" in modes and shutil.which("wrk") is None:
        raise SystemExit("http mode needs wrk on PATH (apt-get install wrk)")
    if "ir" in modes or "ir-http" in modes:
        if shutil.which("valgrind") is None:
            raise SystemExit("ir mode needs valgrind on PATH (apt-get install valgrind)")
        deterministic = ("bare", "drip-deferred", f"drip-deferred{SUFFIX}", "raw")
        cases = [c for c in cases if c in deterministic]
        args.repeats = 1  # a count does not vary from run to run
    _bench.header("web_middleware", f"{args.endpoint} def endpoint; cases: {', '.join(cases)}; {args.repeats} repeats "
                  f"interleaved; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    results = _bench.Results("web_middleware")
    with _bench.DripServer() as server:
        stored = Stored(server)
        try:
            for mode in modes:
                if mode == "http":  # drip serve (all its threads) shares the load's core
                    subprocess.run(["taskset", "-a", "-p", "-c", cores()[1], str(server.pid)],
                                   check=True, capture_output=True)  # fmt: skip
                run_cases = (["raw"] if mode == "http" else []) + cases
                report(mode, compare(args, mode, run_cases, server, stored), results)
        finally:
            stored.close()
    checked = "" if modes == ["ir"] else ("; every drip run: all records sent, none dropped, "
                                          "the server holds one api_calls event per request")  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}{checked}")
    return results.finish(args.json)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
