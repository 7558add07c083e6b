"""Read latency as an account grows: usage summaries, run lists and a 10,000-event timeline at
10k / 100k / 1M / 10M stored events, over HTTP against ``drip serve`` (SQLite).

Data sets are built with bulk SQL, not through the API (10M events through ingest takes minutes
here): the schema comes from the server's own migrations, rows go in with ``executemany`` with
the event indexes dropped and rebuilt after, and the rollups are filled with ``INSERT … SELECT …
GROUP BY`` from the rows (the server keeps them up to date itself on every write; that path is
tested in ``tests/server`` and timed by ``ingest_backends.py``). The shape follows the scale
measurements: runs of 100 events, half of the runs for one big customer and the rest round-robin
over the others, three meters plus an event type, a usage record per run, run starts spread over
30 days, and one run of 10,000 events. Files are kept in ``$DRIP_BENCH_DIR`` (default
``/tmp/drip-reads-bench``) and reused while the schema is the same; never commit them.

    python benchmarks/reads.py                 # 10k, 100k, 1M
    python benchmarks/reads.py --sizes 10k,100k,1M,10M
"""

from __future__ import annotations

import gc
import hashlib
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import _bench
import httpx

DIR = Path(os.environ.get("DRIP_BENCH_DIR", "/tmp/drip-reads-bench"))
SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}
CUSTOMERS = {10_000: 100, 100_000: 1_000, 1_000_000: 10_000, 10_000_000: 10_000}
RUN_EVENTS = 100
TIMELINE_EVENTS = 10_000
METERS = ("llm_tokens", "tool_calls", "api_calls")
SPAN_S = 30 * 86_400
BASE_S = 1_795_996_800  # 2026-12-01T00:00:00Z; runs start during the 30 days before it


def iso(seconds: float) -> str:
    """``seconds`` since the epoch in the stored format."""
    whole = int(seconds)
    micros = round((seconds - whole) * 1e6)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


#: the 7-day window with both edges half an hour from the hour: the most rows an edge reads
#: (the other window's edges are 20.6 min past and 0.25 s before the hour)
HALF = (iso(BASE_S - 7 * 86_400 + 1800), iso(BASE_S - 2 * 3600 + 1800))


def _head() -> str:
    """What a stored data set must match to be reused: the schema revision and its tables."""
    from drip.server.storage import migrations, schema

    columns = sorted(f"{t.name}.{c.name}" for t in schema.metadata.tables.values() for c in t.c)
    return f"{migrations.head()}-{hashlib.sha256(repr(columns).encode()).hexdigest()[:8]}"


def build(n: int) -> tuple[Path, dict[str, Any]]:
    """The data set of ``n`` events (built once per schema revision): (file, facts)."""
    DIR.mkdir(parents=True, exist_ok=True)
    path = DIR / f"reads-{n}.db"
    facts_path = DIR / f"reads-{n}.json"
    if facts_path.exists() and path.exists():
        facts = json.loads(facts_path.read_text())
        if facts.get("revision") == _head():
            return path, facts
    for old in DIR.glob(f"reads-{n}.db*"):
        old.unlink()
    t0 = time.perf_counter()
    key = subprocess.run(
        _bench.drip_command("keys", "create", "--db", str(path)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    account = conn.execute("SELECT account_id FROM api_keys").fetchone()[0]
    index_sql = [
        row[0]
        for row in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='events' "
            "AND sql IS NOT NULL AND name NOT LIKE 'uq_%'"
        )
    ]
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='events' "
        "AND sql IS NOT NULL AND name NOT LIKE 'uq_%'"
    ).fetchall():
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    customers = CUSTOMERS[n]
    t = iso(BASE_S)
    conn.executemany(
        "INSERT INTO customers (account_id, id, external_customer_id, is_internal, status, "
        "created_at, updated_at) VALUES (?, ?, ?, 0, 'ACTIVE', ?, ?)",
        [(account, f"cus_{i:06d}", f"user_{i}", t, t) for i in range(customers)],
    )
    conn.executemany(
        "INSERT INTO workflows (account_id, id, name, slug, product_surface, is_active, "
        "created_at) VALUES (?, ?, ?, ?, 'CUSTOM', 1, ?)",
        [(account, f"wf_{i}", f"Flow {i}", f"flow-{i}", t) for i in range(3)],
    )
    runs = (n - TIMELINE_EVENTS) // RUN_EVENTS if n > TIMELINE_EVENTS else n // RUN_EVENTS
    sizes = [RUN_EVENTS] * runs
    # the big run, in the middle of the history (at 10k it comes on top: 20k events in all)
    sizes.insert(runs // 2, TIMELINE_EVENTS)
    step = SPAN_S / len(sizes)
    small = 1  # a small customer: one of the round-robin ones
    run_rows, event_rows, usage_rows = [], [], []
    seq = 0
    for r, size in enumerate(sizes):
        customer = 0 if r % 2 == 0 else 1 + (r // 2) % (customers - 1)
        start = BASE_S - SPAN_S + r * step
        status = "FAILED" if r % 50 == 49 else "COMPLETED"
        run_id = f"run_{r:08d}"
        run_rows.append(
            (account, run_id, f"cus_{customer:06d}", f"wf_{r % 3}", status, iso(start),
             iso(start + size * 0.01), iso(start))
        )  # fmt: skip
        for k in range(size):
            seq += 1
            if k % 10 == 9:
                meter, only, quantity, meta = "step.done", 1, 1.0, None
            else:
                meter, only = METERS[k % 3], None
                quantity = 100.0 + k if meter == "llm_tokens" else 1.0
                meta = '{"model":"gpt-x"}' if meter == "llm_tokens" and k % 2 else None
            event_rows.append(
                (account, f"evt_{seq:010d}", run_id, f"cus_{customer:06d}", meter, meter,
                 quantity, iso(start + k * 0.01), 1.5, "ok", meta, only)
            )  # fmt: skip
        usage_rows.append(
            (account, f"use_{r:08d}", "usage", f"cus_{customer:06d}", "api_calls", 1.0, iso(start))
        )
        if len(event_rows) >= 200_000:
            _flush(conn, run_rows, event_rows, usage_rows)
    _flush(conn, run_rows, event_rows, usage_rows)
    conn.execute("COMMIT")
    for sql in index_sql:
        conn.execute(sql)
    _rollups(conn)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("ANALYZE")
    conn.close()
    big_run = f"run_{runs // 2:08d}"
    facts = {
        "revision": _head(),
        "key": key,
        "events": seq,
        "runs": len(sizes),
        "customers": customers,
        "big_customer": "cus_000000",
        "small_customer": f"cus_{small:06d}",
        "timeline_run": big_run,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    facts_path.write_text(json.dumps(facts))
    return path, facts


def _flush(conn: sqlite3.Connection, runs: list[Any], events: list[Any], usage: list[Any]) -> None:
    conn.executemany(
        "INSERT INTO runs (account_id, id, customer_id, workflow_id, status, started_at, "
        "ended_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        runs,
    )
    conn.executemany(
        "INSERT INTO events (account_id, id, run_id, customer_id, event_type, meter, quantity, "
        "timestamp, duration_ms, outcome, meta, event_only) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        events,
    )
    conn.executemany(
        "INSERT INTO usage_records (account_id, id, family, customer_id, usage_type, quantity, "
        "timestamp) VALUES (?, ?, ?, ?, ?, ?, ?)",
        usage,
    )
    runs.clear()
    events.clear()
    usage.clear()


def _rollups(conn: sqlite3.Connection) -> None:
    """Fill the rollups from the rows (what the server's writes do one batch at a time)."""
    kind = "CASE WHEN e.event_only THEN 'event' ELSE 'meter' END"
    # the server writes whole sums without a decimal point ("1700"); so does this
    total = "CASE WHEN sum({0}) = CAST(sum({0}) AS INTEGER) THEN CAST(CAST(sum({0}) AS INTEGER) AS TEXT) ELSE CAST(sum({0}) AS TEXT) END"
    model = "COALESCE(json_extract(e.meta, '$.model'), '')"
    for customer in ("e.customer_id", "'*'"):
        conn.execute(
            "INSERT INTO usage_rollups (account_id, customer_id, hour, meter, kind, workflow_id, "
            "model, run_events, usage_records, charges, quantity, amount_micros) "
            f"SELECT e.account_id, {customer}, substr(e.timestamp, 1, 13), e.meter, {kind}, "
            f"r.workflow_id, {model}, count(*), 0, 0, {total.format('e.quantity')}, 0 "
            "FROM events e JOIN runs r ON r.account_id = e.account_id AND r.id = e.run_id "
            f"GROUP BY e.account_id, {customer}, substr(e.timestamp, 1, 13), e.meter, {kind}, "
            f"r.workflow_id, {model}"
        )
        conn.execute(
            "INSERT INTO usage_rollups (account_id, customer_id, hour, meter, kind, workflow_id, "
            "model, run_events, usage_records, charges, quantity, amount_micros) "
            f"SELECT u.account_id, {customer.replace('e.', 'u.')}, substr(u.timestamp, 1, 13), "
            f"u.usage_type, 'meter', '', '', 0, count(*), 0, {total.format('u.quantity')}, 0 "
            f"FROM usage_records u GROUP BY u.account_id, {customer.replace('e.', 'u.')}, "
            "substr(u.timestamp, 1, 13), u.usage_type"
        )
    conn.execute(
        "INSERT INTO run_meters (account_id, run_id, meter, kind, events, quantity, cost_units) "
        f"SELECT e.account_id, e.run_id, e.meter, {kind}, count(*), {total.format('e.quantity')}, "
        "CAST(COALESCE(sum(e.cost_units), 0) AS TEXT) "
        f"FROM events e GROUP BY e.account_id, e.run_id, e.meter, {kind}"
    )


class Server:
    """``drip serve`` over an existing file (a subprocess; its CPU is not ours)."""

    def __init__(self, path: Path) -> None:
        self.port = _bench.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            _bench.drip_command(
                "serve", "--db", str(path), "--port", str(self.port), "--log-level", "warning"
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("drip serve did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1000


#: CPU ms of each case, by where it was measured: what a loaded host inflates least (the
#: wall-clock medians above count the time spent waiting for a core as well)
CPU: dict[str, dict[str, dict[str, float]]] = {"server": {}, "in process": {}}


def _process_cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns (``/proc/PID/task/*/schedstat``)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            pass
    return total


def in_process(path: Path, facts: dict[str, Any], repeats: int) -> dict[str, float]:
    """The same reads as storage calls plus JSON encoding, no HTTP: the server's own work."""
    import pydantic_core

    from drip.server.pricing import Pricing
    from drip.server.storage import run_list, summary, timeline
    from drip.server.storage.database import Database

    db = Database(f"sqlite:///{path}")
    account = sqlite3.connect(path).execute("SELECT account_id FROM api_keys").fetchone()[0]
    small, big, pricing = facts["small_customer"], facts["big_customer"], Pricing()
    since, until = iso(BASE_S - 7 * 86_400 + 1234.5), iso(BASE_S - 3600.25)

    cpu: dict[str, list[float]] = {}

    def encoded(make: Callable[[], Any]) -> Callable[[], float]:
        def call() -> float:
            def work() -> None:
                body = make()
                if isinstance(body, bytes):  # the timeline: already the response's JSON
                    return
                pydantic_core.to_json(
                    body.model_dump(by_alias=True) if hasattr(body, "model_dump") else body
                )

            c0 = time.thread_time()
            elapsed = _timed(work)
            cpu.setdefault(current[0], []).append((time.thread_time() - c0) * 1000)
            return elapsed

        return call

    current = [""]

    cursor = run_list.list_runs(db, account)["nextCursor"]
    cases = {
        "summary, small customer": encoded(lambda: summary.usage_summary(db, account, small, None)),
        "summary, big customer": encoded(lambda: summary.usage_summary(db, account, big, None)),
        "summary, whole account": encoded(lambda: summary.usage_summary(db, account, None, None)),
        "summary, account, 7-day window by day": encoded(
            lambda: summary.usage_summary(db, account, None, None, since, until, ["day", "meter"])
        ),
        "summary, same window, edges at :30": encoded(
            lambda: summary.usage_summary(db, account, None, None, *HALF, ["day", "meter"])
        ),
        "run list (50)": encoded(lambda: run_list.list_runs(db, account)),
        "run list (50), small customer": encoded(
            lambda: run_list.list_runs(db, account, customer_id=small)
        ),
        "run list (50), next page": encoded(lambda: run_list.list_runs(db, account, cursor=cursor)),
        "timeline, 10k-event run": encoded(
            lambda: timeline.get_timeline(db, pricing, account, facts["timeline_run"], None)
        ),
    }
    try:
        for call in cases.values():
            call()
        cpu.clear()
        # as ``drip serve`` does once started (``app._lifespan``): what is built so far is
        # left out of the collector's full passes
        gc.collect()
        gc.freeze()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeats):
            for name, call in cases.items():
                current[0] = name
                times[name].append(call())
    finally:
        gc.unfreeze()
        db.dispose()
    CPU["in process"][str(path)] = {name: statistics.median(v) for name, v in cpu.items()}
    return {name: statistics.median(values) for name, values in times.items()}


class Client:
    """A keep-alive HTTP/1.1 client on one loopback connection (``http.client``, Nagle off).

    The reads are timed with it rather than with httpx: httpx spends ~0.3-0.5 ms of client CPU
    per request here (measured against this client), which is the benchmark's own cost, not
    the server's. The floor row timed with httpx is printed too, for comparison."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, url: str, **params: Any) -> tuple[int, bytes]:
        """(status, body) of ``GET url?params``, the whole body read."""
        if params:
            url = f"{url}?{urlencode(params)}"
        self.conn.request("GET", url, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def measure(path: Path, facts: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median ms per request, the cases interleaved (a, b, c, a, b, c, …)."""
    server = Server(path)
    api = Client(server.port, facts["key"])
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {facts['key']}"}, timeout=120
        ) as slow:
            cursor = json.loads(api.get("/v1/runs", limit=50)[1])["nextCursor"]
            window = {"since": iso(BASE_S - 7 * 86_400 + 1234.5), "until": iso(BASE_S - 3600.25)}

            pid = server.proc.pid
            cpu: dict[str, list[float]] = {}

            def get(url: str, **params: Any) -> Callable[[], float]:
                def call() -> float:
                    c0 = _process_cpu_ns(pid)
                    t0 = time.perf_counter()
                    status, body = api.get(url, **params)
                    elapsed = (time.perf_counter() - t0) * 1000
                    cpu.setdefault(url + repr(params), []).append((_process_cpu_ns(pid) - c0) / 1e6)
                    assert status == 200, body[:500]
                    return elapsed

                return call

            def httpx_floor() -> float:
                t0 = time.perf_counter()
                response = slow.get("/health")
                elapsed = (time.perf_counter() - t0) * 1000
                assert response.status_code == 200, response.text
                return elapsed

            cases = {
                "HTTP floor (GET /health)": get("/health"),
                "HTTP floor (GET /health), httpx client": httpx_floor,
                "summary, small customer": get(
                    "/v1/usage/summary", customerId=facts["small_customer"]
                ),
                "summary, big customer": get("/v1/usage/summary", customerId=facts["big_customer"]),
                "summary, whole account": get("/v1/usage/summary"),
                "summary, account, 7-day window by day": get(
                    "/v1/usage/summary", groupBy="day,meter", **window
                ),
                "summary, same window, edges at :30": get(
                    "/v1/usage/summary", groupBy="day,meter", since=HALF[0], until=HALF[1]
                ),
                "run list (50)": get("/v1/runs", limit=50),
                "run list (50), small customer": get(
                    "/v1/runs", limit=50, customerId=facts["small_customer"]
                ),
                "run list (50), next page": get("/v1/runs", limit=50, cursor=cursor),
                "timeline, 10k-event run": get(f"/v1/runs/{facts['timeline_run']}/timeline"),
            }
            for call in cases.values():  # warm the page cache and the connection
                call()
            cpu.clear()
            times: dict[str, list[float]] = {name: [] for name in cases}
            server_cpu: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(repeats):
                for name, call in cases.items():
                    times[name].append(call())
                    for values in cpu.values():  # the one request just made
                        server_cpu[name].append(values.pop())
                    cpu.clear()
            timeline = json.loads(api.get(f"/v1/runs/{facts['timeline_run']}/timeline")[1])
            assert len(timeline["events"]) == TIMELINE_EVENTS
    finally:
        api.close()
        server.stop()
    CPU["server"][str(path)] = {
        name: statistics.median(values) for name, values in server_cpu.items() if values
    }
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k,1M", help="any of 10k,100k,1M,10M")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    _bench.header("reads.py", f"sizes {', '.join(sizes)}; median of {args.repeats}, over HTTP")
    built = {}
    for label in sizes:
        path, facts = build(SIZES[label])
        built[label] = (path, facts)
        size = sum(p.stat().st_size for p in DIR.glob(f"reads-{SIZES[label]}.db*"))
        print(
            f"  {label}: {facts['events']:,} events, {facts['runs']:,} runs, "
            f"{facts['customers']:,} customers, {size / facts['events']:.0f} B/event "
            f"(built in {facts['build_s']} s, reused when present)",
            flush=True,
        )
    results, inside = {}, {}
    for label, (path, facts) in built.items():
        results[label] = measure(path, facts, args.repeats)
        inside[label] = in_process(path, facts, args.repeats)
    for title, found in (
        ("over HTTP (drip serve, one keep-alive connection), median ms", results),
        ("in process (storage call + JSON encoding, no HTTP), median ms", inside),
    ):
        names = list(next(iter(found.values())))
        rows = [[name, *(f"{found[label][name]:.2f}" for label in sizes)] for name in names]
        header = ["median ms", *sizes]
        if len(sizes) > 1:
            first, last = sizes[0], sizes[-1]
            growth = SIZES[last] / SIZES[first]
            for row, name in zip(rows, names, strict=True):
                row.append(f"{found[last][name] / found[first][name]:.1f}x")
            header.append(f"{last}/{first} (events x{growth:,.0f})")
        print()
        print(_bench.table(header, rows, title=title))
    for where, title in (
        ("server", "server CPU per request over HTTP (all its threads, /proc), median ms"),
        ("in process", "CPU of the reading thread in process, median ms"),
    ):
        by_size = {label: CPU[where][str(built[label][0])] for label in sizes}
        names = list(next(iter(by_size.values())))
        rows = [[name, *(f"{by_size[label][name]:.2f}" for label in sizes)] for name in names]
        print()
        print(_bench.table(["median CPU ms", *sizes], rows, title=title))
    out = _bench.Results("reads.py")
    top = sizes[-1]
    for name, limit in (
        ("summary, small customer", 5.0),
        ("run list (50)", 5.0),
        ("run list (50), small customer", 5.0),
        ("summary, whole account", 50.0),
        ("timeline, 10k-event run", 50.0),
    ):
        for where, found in (("HTTP", results), ("in process", inside)):
            value = found[top][name]
            out.check(f"{name} at {top}, {where}", value, "ms", f"<= {limit:g} ms", value <= limit)
    if len(sizes) > 1:
        for name in ("summary, small customer", "summary, whole account", "run list (50)"):
            ratio = results[sizes[-1]][name] / results[sizes[0]][name]
            growth = SIZES[sizes[-1]] / SIZES[sizes[0]]
            out.check(
                f"{name}: growth {sizes[0]} -> {sizes[-1]}",
                ratio,
                "x",
                f"sub-linear (events grew {growth:,.0f}x)",
                ratio < growth**0.5,
            )
    return out.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
