"""Server-side ingest on SQLite and PostgreSQL, side by side in one run.

    python benchmarks/ingest_backends.py postgresql://postgres@127.0.0.1:5432/postgres [--rounds 3]

For each round and each backend (interleaved: SQLite, PostgreSQL, SQLite, ...): a fresh
database (a temp SQLite file; a new database on the PostgreSQL server named), ``drip serve``
as a subprocess with one worker, then batches of 5,000 events of the SDK's usual shape
(``POST /v1/ingest?results=compact``, one run start per batch) sent one after another from
this process. It prints events/s, the ``drip serve`` process's CPU per event (user + system,
from ``/proc``: Linux only) and, for PostgreSQL, the CPU of that PostgreSQL server's own
processes (the postmaster and its children, from ``/proc/PID/schedstat``; the server must run on
this machine), the medians, and the ratio PostgreSQL / SQLite. The numbers move with the
machine's load; the ratio of one run is the result (issue 7's target: PostgreSQL at least 70% of
SQLite's single-worker rate), and the CPU per event is the figure a loaded host does not bend.

    python benchmarks/ingest_backends.py URL --compare DIR   # also a server run from DIR

``--compare DIR`` (another checkout, e.g. ``git worktree add --detach DIR COMMIT``) measures a
``drip serve`` run from DIR (``PYTHONPATH=DIR``) as well, interleaved with this checkout's in
every round: this, DIR, this, DIR on SQLite then on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import _bench
import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from drip.server.storage.postgres import driver_url

BATCH = 5_000
BATCHES = 10
#: issue 7: PostgreSQL's single-worker ingest rate at least this share of SQLite's
TARGET_SHARE = 0.70


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postmaster(url: str) -> int:
    """The PID of the PostgreSQL server behind ``url`` (the parent of a backend)."""
    import psycopg

    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(False)) as c:
        row = c.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        # read while the backend lives (it ends with the connection)
        return int(Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _server_cpu(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster and every process it started."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == postmaster or int(proc.name) == postmaster:
                total += int((proc / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    return total / 1e9


def _body(customer_id: str) -> bytes:
    run_id = f"run_{uuid.uuid4().hex}"
    items: list[dict[str, object]] = [
        {"type": "run.start", "id": run_id, "customerId": customer_id, "workflow": "bench"}
    ]
    items += [
        {
            "type": "event",
            "id": f"evt_{uuid.uuid4().hex}",
            "runId": run_id,
            "eventType": "llm",
            "meter": "tokens",
            "quantity": 3.0,
            "timestamp": "2026-12-02T00:00:00.000000Z",
            "durationMs": 1.5,
            "outcome": "ok",
        }
        for _ in range(BATCH - 1)
    ]
    return json.dumps({"items": items}).encode()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(url: str, tree: str | None = None) -> tuple[float, float, float]:
    """(events/s, drip serve CPU µs per event, PostgreSQL CPU µs per event) of one fresh server
    over ``url`` (run from ``tree`` when given)."""
    port = _free_port()
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = tree
    postmaster = _postmaster(url) if url.startswith("postgres") else None
    server = subprocess.Popen(
        [
            *_bench.drip_command("serve", "--database-url", url),
            *("--port", str(port), "--log-level", "warning"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        key = ""
        while not key:
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("drip serve ended before printing a key")
            if "secret key:" in line:
                key = line.split("secret key:")[1].split()[0]
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/health")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{base}/v1", headers=headers, timeout=300) as api:
            customer = api.post("/customers", json={"externalCustomerId": "bench"}).json()["id"]
            bodies = [_body(customer) for _ in range(BATCHES + 1)]
            api.post("/ingest?results=compact", content=bodies[0])  # warm-up
            pg0 = 0.0 if postmaster is None else _server_cpu(postmaster)
            cpu0, t0 = _cpu_seconds(server.pid), time.perf_counter()
            for body in bodies[1:]:
                answer = api.post("/ingest?results=compact", content=body)
                assert answer.status_code == 200 and answer.json()["created"] == BATCH
            elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(server.pid) - cpu0
            pg = 0.0 if postmaster is None else _server_cpu(postmaster) - pg0
        events = BATCH * BATCHES
        return events / elapsed, cpu / events * 1e6, pg / events * 1e6
    finally:
        server.terminate()
        server.wait(30)


def _fresh_postgres(admin_url: str) -> tuple[str, str]:
    name = f"drip_bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(driver_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(driver_url(admin_url)).set(database=name)
    return url.render_as_string(hide_password=False), name


def _drop_postgres(admin_url: str, name: str) -> None:
    engine = create_engine(driver_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _report(label: str, results: dict[str, list[tuple[float, float, float]]]) -> float:
    """Print the medians of one checkout; its PostgreSQL / SQLite share of the rate."""
    rate = {k: statistics.median(r for r, _, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, c, _ in v) for k, v in results.items()}
    pg_cpu = statistics.median(p for _, _, p in results["postgresql"])
    print(f"{label}: median sqlite     {rate['sqlite']:>9,.0f} events/s {cpu['sqlite']:>6.1f} µs")
    print(
        f"{label}: median postgresql {rate['postgresql']:>9,.0f} events/s "
        f"{cpu['postgresql']:>6.1f} µs  (+ PostgreSQL {pg_cpu:.1f} µs)"
    )
    share = rate["postgresql"] / rate["sqlite"]
    verdict = "PASS" if share >= TARGET_SHARE else "FAIL"
    ratios = [p[0] / s[0] for s, p in zip(results["sqlite"], results["postgresql"], strict=True)]
    print(
        f"{label}: PostgreSQL / SQLite {share:.0%} of the rate (target >= {TARGET_SHARE:.0%}: "
        f"{verdict}); same-round ratios: " + ", ".join(f"{r:.0%}" for r in ratios)
    )
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("postgres_url", help="a PostgreSQL server to make databases on")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", metavar="DIR", help="another checkout, run side by side")
    args = parser.parse_args()
    trees: dict[str, str | None] = {"this": None}
    if args.compare:
        trees["compare"] = args.compare
    results = {t: {"sqlite": [], "postgresql": []} for t in trees}  # type: ignore[var-annotated]
    for round_ in range(1, args.rounds + 1):
        for label, tree in trees.items():
            with tempfile.TemporaryDirectory() as tmp:
                results[label]["sqlite"].append(measure(f"sqlite:///{tmp}/bench.db", tree))
        for label, tree in trees.items():
            url, name = _fresh_postgres(args.postgres_url)
            try:
                results[label]["postgresql"].append(measure(url, tree))
            finally:
                _drop_postgres(args.postgres_url, name)
        for label in trees:
            for backend, found in results[label].items():
                rate, cpu, pg = found[-1]
                extra = f" + PostgreSQL {pg:.1f} µs" if backend == "postgresql" else ""
                print(
                    f"round {round_} {label:<8} {backend:<10} {rate:>9,.0f} events/s "
                    f"{cpu:>6.1f} µs CPU/event{extra}"
                )
    for label in trees:
        _report(label, results[label])


if __name__ == "__main__":
    main()
