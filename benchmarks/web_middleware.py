"""Requests/s of a minimal FastAPI endpoint: bare, with drip's ``DripMiddleware``, and with
sentry-python's / logfire's FastAPI integrations when they are installed, in the same run.

Two ways of driving the app, each case in its own subprocess (sentry and logfire patch
Starlette process-wide, so no case may share a process with another), cases interleaved
(bare, drip, sentry, bare, drip, sentry, ...), medians of the repeats:

* ``asgi``: the app called directly, ``await app(scope, receive, send)`` in a loop. No server,
  no socket: the framework and the middleware are all that is timed, so this is the worst
  case for any middleware's share.
* ``http``: the app served by uvicorn (one process) on a loopback port, driven by a client
  process keeping 8 connections busy with pipelined keep-alive requests. What a deployed
  service sees, on a machine where the client competes for the same cores.

drip's cases meter every request for a customer (one run: start, one ``api_calls`` event, end)
for a ``drip serve`` subprocess. ``drip``: delivery live, the worker ships records while the
requests run (its encoding shares the GIL, and the server's ingest shares this machine's cores
with the app and the load generator). ``drip-deferred``: the worker sleeps through the timed
requests and ships everything after (the middleware's own cost). Either way, at the end its
stats must show every record sent and none dropped. sentry's case traces every
request (``traces_sample_rate=1.0``) into a transport that drops the envelopes; logfire's
sends nothing (``send_to_logfire=False``).

    python benchmarks/web_middleware.py              # both modes
    python benchmarks/web_middleware.py --mode asgi
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import _bench

REPEATS = 5
ASGI_N = 4_000
HTTP_SECONDS = 3.0
CONNECTIONS = 8
PIPELINE = 16
TARGET = 0.95
CASES = ["bare", "drip", "drip-deferred", "sentry", "logfire"]


def installed(case: str) -> bool:
    module = {"sentry": "sentry_sdk", "logfire": "logfire"}.get(case)
    return module is None or importlib.util.find_spec(module) is not None


# -- one case, in its own process ----------------------------------------------------------


def build_app(case: str, url: str, key: str) -> Any:
    """The app of ``case``: one endpoint, plus what the case adds."""
    if case == "sentry":
        import sentry_sdk
        from sentry_sdk.transport import Transport

        class Drop(Transport):
            def capture_envelope(self, envelope: Any) -> None:
                pass

        sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", traces_sample_rate=1.0, transport=Drop)
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    if case.startswith("drip"):
        from drip.integrations.fastapi import DripMiddleware

        import drip

        if case == "drip-deferred":  # the worker sleeps through the timed requests
            drip.configure(api_key=key, base_url=url, flush_interval=3600,
                           max_batch_items=1_000_000, max_buffer=1_000_000)  # fmt: skip
        else:
            drip.configure(api_key=key, base_url=url)
        app.add_middleware(DripMiddleware, customer=lambda request: request.headers["x-customer"])
    elif case == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False)
        logfire.instrument_fastapi(app)
    return app


async def drive_asgi(app: Any, customer: str, n: int) -> float:
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
    t0 = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return n / (time.perf_counter() - t0)


def run_case(args: argparse.Namespace) -> None:
    app = build_app(args.case, args.url, args.key)
    if args.mode == "asgi":
        rps = asyncio.run(drive_asgi(app, args.customer, ASGI_N))
    else:
        rps = serve_and_load(app, args.customer)
    sent = None
    if args.case.startswith("drip"):
        import drip

        drip.flush(60)
        stats = drip.stats()
        sent = {"recorded": stats.recorded, "sent": stats.sent, "dropped": stats.dropped}
    print(json.dumps({"rps": rps, "drip": sent}))


def serve_and_load(app: Any, customer: str) -> float:
    """Serve ``app`` with uvicorn on a loopback port; a client process measures requests/s."""
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--load", str(port), "--customer", customer],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(out.stdout.strip())
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# -- the load generator (its own process) --------------------------------------------------


def load(port: int, customer: str) -> float:
    """Keep ``CONNECTIONS`` keep-alive connections busy, ``PIPELINE`` requests in flight each."""
    request = (
        f"GET /items/7 HTTP/1.1\r\nHost: bench\r\nx-customer: {customer}\r\n\r\n"
    ).encode() * PIPELINE

    async def connection(deadline: float, counts: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        buffered = b""
        while time.perf_counter() < deadline:
            writer.write(request)
            answered = 0
            while answered < PIPELINE:
                buffered += await reader.read(65536)
                while True:  # each answer: headers, then a Content-Length body
                    end = buffered.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buffered[:end].lower()
                    length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                    if len(buffered) < end + 4 + length:
                        break
                    buffered = buffered[end + 4 + length :]
                    answered += 1
            counts.append(answered)
        writer.close()

    async def main() -> float:
        counts: list[int] = []
        warm = time.perf_counter() + 0.5
        await asyncio.gather(*(connection(warm, []) for _ in range(CONNECTIONS)))
        t0 = time.perf_counter()
        await asyncio.gather(*(connection(t0 + HTTP_SECONDS, counts) for _ in range(CONNECTIONS)))
        return sum(counts) / (time.perf_counter() - t0)

    return asyncio.run(main())


# -- the comparison ------------------------------------------------------------------------


def compare(mode: str, cases: list[str], server: Any, customer: str) -> dict[str, list[float]]:
    rps: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(REPEATS):
        for case in cases:
            out = subprocess.run(
                [sys.executable, __file__, "--case", case, "--mode", mode, "--url", server.url,
                 "--key", server.key, "--customer", customer],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            answer = json.loads(out.stdout.strip().splitlines()[-1])
            rps[case].append(answer["rps"])
            if answer["drip"] is not None:
                stats = answer["drip"]
                assert stats["sent"] == stats["recorded"] and not stats["dropped"], stats
    return rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--mode", choices=["asgi", "http", "both"], default="both")
    parser.add_argument("--case")
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--customer")
    parser.add_argument("--load", type=int)
    args = parser.parse_args()
    if args.load:
        print(load(args.load, args.customer))
        return 0
    if args.case:
        run_case(args)
        return 0

    cases = [c for c in CASES if installed(c)]
    _bench.header("web_middleware", f"cases: {', '.join(cases)}; {REPEATS} repeats interleaved")
    results = _bench.Results("web_middleware")
    with _bench.DripServer() as server:
        import drip

        with drip.Drip(api_key=server.key, base_url=server.url) as client:
            customer = client.create_customer(external_customer_id="bench-web").id
        modes = ["asgi", "http"] if args.mode == "both" else [args.mode]
        for mode in modes:
            rps = compare(mode, cases, server, customer)
            bare = _bench.median(rps["bare"])
            rows = []
            for case in cases:
                value = _bench.median(rps[case])
                rows.append((case, _bench.fmt(value), f"{value / bare:.1%}",
                             " ".join(_bench.fmt(v) for v in rps[case])))  # fmt: skip
            print()
            print(_bench.table(["case", "req/s (median)", "of bare", "repeats"], rows,
                               title=f"{mode}: requests/s"))  # fmt: skip
            for case, label in (("drip-deferred", "delivery deferred"), ("drip", "delivery live")):
                ratio = _bench.median(rps[case]) / bare
                results.check(f"{mode}: DripMiddleware req/s, share of bare ({label})",
                              ratio * 100, "%", f">= {TARGET:.0%}", ratio >= TARGET)  # fmt: skip
            for peer in ("sentry", "logfire"):
                if peer in rps:
                    share = _bench.median(rps[peer]) / bare * 100
                    results.check(f"{mode}: {peer} FastAPI req/s, share of bare", share, "%",
                                  "", None)  # fmt: skip
    return results.finish(args.json)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
