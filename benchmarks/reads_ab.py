"""Reads before and after a change, side by side: the server of an older commit and the server of
this tree on the same ``reads.py`` data set, the same requests sent to both in turn (a, b, a, b,
…), wall-clock latency and the server's CPU per request (all its threads, from ``/proc``).

The older server is the ``drip`` package of ``--before`` (``git archive``, into a temporary
folder) served by uvicorn with the HTTP parser and event loop given by ``--before-http`` and
``--before-loop`` (default h11 and asyncio: what an install of that commit had); this tree's
server is served as ``drip serve`` serves it (uvicorn's defaults pick httptools and uvloop when
installed). Both read the same SQLite file; nothing is written. The answers must be the same
bytes (``/health`` but its timestamp); which server is asked first alternates from one repeat
to the next. Linux only (``/proc``).

    python benchmarks/reads_ab.py --before 47458a4 --size 10M --repeats 15
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from urllib.parse import urlencode

import _bench
from reads import BASE_S, DIR, HALF, SIZES, _process_cpu_ns, build, iso

ROOT = Path(__file__).resolve().parent.parent


def _extract(commit: str, into: Path) -> None:
    """The ``drip`` package of ``commit`` under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "drip"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


class Served:
    """``uvicorn --factory drip.server.app:create_app`` on the data set, as a subprocess."""

    def __init__(self, path: Path, pythonpath: str | None, http: str, loop: str) -> None:
        self.port = _bench.free_port()
        env = {**os.environ, "DRIP_DATABASE_URL": f"sqlite:///{path}"}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        # ``python -m`` puts the working directory first on sys.path: run where the package
        # to serve is (run from the repository, the older server would import this tree's)
        cwd = pythonpath or str(ROOT)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory", "drip.server.app:create_app",
                "--port", str(self.port), "--http", http, "--loop", loop,
                "--log-level", "warning",
            ],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        self.conn = http_connection(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def http_connection(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection with Nagle off (as ``reads.Client``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="47458a4", help="the older commit")
    parser.add_argument("--before-http", default="h11")
    parser.add_argument("--before-loop", default="asyncio")
    parser.add_argument("--size", default="10M", choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    _bench.header(
        "reads_ab.py",
        f"{args.before} vs this tree at {args.size}; median of {args.repeats}, interleaved",
    )
    path, facts = build(SIZES[args.size])
    print(f"  data set: {path} ({facts['events']:,} events; {DIR})")
    headers = {"Authorization": f"Bearer {facts['key']}"}
    window = {
        "since": iso(BASE_S - 7 * 86_400 + 1234.5),
        "until": iso(BASE_S - 3600.25),
        "groupBy": "day,meter",
    }
    cases: dict[str, str] = {
        "HTTP floor (GET /health)": "/health",
        "summary, small customer": f"/v1/usage/summary?customerId={facts['small_customer']}",
        "summary, whole account": "/v1/usage/summary",
        "summary, 7-day window by day": f"/v1/usage/summary?{urlencode(window)}",
        "summary, same window, edges at :30": "/v1/usage/summary?"
        + urlencode({"since": HALF[0], "until": HALF[1], "groupBy": "day,meter"}),
        "run list (50)": "/v1/runs?limit=50",
        "run list (50), small customer": f"/v1/runs?limit=50&customerId={facts['small_customer']}",
        "timeline, 10k-event run": f"/v1/runs/{facts['timeline_run']}/timeline",
    }
    with tempfile.TemporaryDirectory(prefix="drip-ab-") as old:
        _extract(args.before, Path(old))
        servers = {
            "before": Served(path, old, args.before_http, args.before_loop),
            "after": Served(path, None, "auto", "auto"),
        }
        try:
            bodies: dict[str, dict[str, bytes]] = {}

            def get(side: str, url: str) -> tuple[float, float]:
                server = servers[side]
                c0 = _process_cpu_ns(server.proc.pid)
                t0 = time.perf_counter()
                server.conn.request("GET", url, headers=headers)
                response = server.conn.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - t0) * 1000
                cpu = (_process_cpu_ns(server.proc.pid) - c0) / 1e6
                assert response.status == 200, body[:300]
                bodies.setdefault(url, {})[side] = body
                return elapsed, cpu

            for url in cases.values():  # warm both
                get("before", url)
                get("after", url)
            for url in cases.values():  # the same answers, before and after, byte for byte
                before, after = bodies[url]["before"], bodies[url]["after"]
                if url == "/health":  # it says when: the rest must match
                    old, new = json.loads(before), json.loads(after)
                    old.pop("timestamp"), new.pop("timestamp")
                    assert old == new, url
                else:
                    assert before == after, url
            found: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for repeat in range(args.repeats):
                # which server goes first alternates: the first of a pair comes after the
                # other server's request, the second right after its own
                order = ("before", "after") if repeat % 2 == 0 else ("after", "before")
                for name, url in cases.items():
                    for side in order:
                        found.setdefault((name, side), []).append(get(side, url))
        finally:
            for server in servers.values():
                server.stop()
    rows = []
    for name in cases:
        wall = {s: statistics.median(v[0] for v in found[name, s]) for s in ("before", "after")}
        cpu = {s: statistics.median(v[1] for v in found[name, s]) for s in ("before", "after")}
        rows.append(
            [
                name,
                f"{wall['before']:.2f}",
                f"{wall['after']:.2f}",
                f"{wall['after'] / wall['before']:.2f}x",
                f"{cpu['before']:.2f}",
                f"{cpu['after']:.2f}",
                f"{cpu['after'] / cpu['before']:.2f}x" if cpu["before"] else "-",
            ]
        )
    print()
    print(
        _bench.table(
            ["median", "wall before", "wall after", "after/before",
             "server CPU before", "server CPU after", "after/before"],
            rows,
            title=f"ms per request at {args.size}; the same bytes from both (checked)",
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
