"""Ingest on SQLite and PostgreSQL, 1 and 4 server workers, 4 producer processes, side by side.

Each configuration gets a fresh database (a new SQLite file; a new database on a throwaway
PostgreSQL server this script starts in a temp dir on a free loopback port and stops at the end)
and its own server, ``uvicorn --factory drip.server.app:create_app --workers W`` (what
``drip serve --workers W`` runs; settings from ``DRIP_DATABASE_URL``). Four producer processes
then record runs of metered events through the SDK at the same moment and flush. Measured:
events/s from the first producer's first call to the last producer's flush, and the server's CPU
per event (every server process, plus every PostgreSQL process for PostgreSQL) from
``/proc/PID/stat``. Every trial checks that the server stored exactly what was sent. The
configurations run interleaved, round after round, so a busy machine slows all of them alike.

PostgreSQL runs with ``synchronous_commit=off``, the durability SQLite has here (WAL with
``synchronous=NORMAL``: a crash can lose the last commits, never corrupts).

    python benchmarks/ingest_sdk.py [--rounds 2] [--events 100000]
    python benchmarks/ingest_sdk.py --compare DIR   # also servers run from another checkout

``--compare DIR`` (e.g. ``git worktree add --detach DIR COMMIT``) runs every configuration a
second time with the server from DIR (``PYTHONPATH=DIR``; the producers keep this checkout's
SDK), right after this checkout's, in every round, and prints its table too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import _bench
import httpx

PRODUCERS = 4
PER_RUN = 1_000
TARGET_PG_SHARE = 0.70  # PostgreSQL W1 events/s over SQLite W1

PRODUCER = textwrap.dedent(
    """
    import json, sys, time
    import drip
    url, key, n, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    client = drip.Drip(api_key=key, base_url=url, max_buffer=n + 1000)
    customer = client.create_customer(external_customer_id=name).id
    fn = client.metered(meter="bench.ingest")(lambda x: x + 1)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.time()
    for _ in range(n // %(per_run)d):
        with client.run(workflow="bench-ingest", customer_id=customer):
            for i in range(%(per_run)d):
                fn(i)
    report = client.flush(600)
    t1 = time.time()
    stats = client.stats()
    print(json.dumps({"t0": t0, "t1": t1, "customer": customer, "failed": report.failed,
                      "dropped": stats.dropped, "rejected": stats.rejected}), flush=True)
    client.close()
    """.replace("%(per_run)d", str(PER_RUN))
)


def tree_cpu(roots: list[int]) -> float:
    """user + system CPU seconds of these processes and all their descendants (Linux)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid in cpu:
        p = pid
        while p > 1:
            if p in roots:
                total += cpu[pid]
                break
            p = parent.get(p, 0)
    return total


class Postgres:
    """A throwaway PostgreSQL server (as the ``postgres`` user when run as root)."""

    def __init__(self) -> None:
        self.bin = Path(shutil.which("pg_ctl") or "/usr/local/bin/pg_ctl").parent
        self.dir = Path(tempfile.mkdtemp(prefix="drip-bench-pg-"))
        self.port = _bench.free_port()
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres")
        self._as_owner(
            str(self.bin / "initdb"),
            "-D",
            f"{self.dir}/data",
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        self._as_owner(
            str(self.bin / "pg_ctl"),
            "-D",
            f"{self.dir}/data",
            "-l",
            f"{self.dir}/log",
            "-w",
            "start",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c synchronous_commit=off "
            "-c max_connections=200",
        )
        with open(f"{self.dir}/data/postmaster.pid") as pid_file:
            self.pid = int(pid_file.readline())
        self.count = 0

    def _as_owner(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.root else []
        subprocess.run([*prefix, *command], check=True, capture_output=True)

    def fresh(self) -> str:
        """A new empty database: its URL."""
        self.count += 1
        name = f"bench{self.count}"
        import psycopg

        base = f"postgresql://postgres@127.0.0.1:{self.port}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{base}/{name}"

    def stop(self) -> None:
        self._as_owner(
            str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop"
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def trial(
    backend: str, workers: int, events: int, pg: Postgres | None, tree: str | None = None
) -> dict[str, float]:
    """One configuration, fresh database and server (run from ``tree`` when given): events/s
    and server CPU us/event."""
    tmp = Path(tempfile.mkdtemp(prefix="drip-bench-ingest-"))
    stack = contextlib.ExitStack()
    server: subprocess.Popen[bytes] | None = None
    try:
        if backend == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
            where = ["--db", f"{tmp}/bench.db"]
        else:
            assert pg is not None
            url = pg.fresh()
            where = ["--database-url", url]
        key = subprocess.run(
            _bench.drip_command("keys", "create", *where), capture_output=True, text=True,
            check=True,
        ).stdout.split()[-1]  # fmt: skip
        port = _bench.free_port()
        env = {**os.environ, "DRIP_DATABASE_URL": url}
        if tree is not None:
            env["PYTHONPATH"] = tree
        log = stack.enter_context(open(tmp / "server.log", "wb"))  # noqa: SIM115
        server = subprocess.Popen(
            [
                *_bench.PYTHON,
                "-m",
                "uvicorn",
                "--factory",
                "drip.server.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "server.log").read_text())
            time.sleep(0.1)
        time.sleep(1.0 if workers > 1 else 0.2)  # every worker up
        per = events // PRODUCERS
        producers = [
            subprocess.Popen(
                [sys.executable, "-c", PRODUCER, base, key, str(per), f"{backend}-{workers}-{i}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(PRODUCERS)
        ]
        for p in producers:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        pg_roots = [pg.pid] if pg is not None and backend == "postgresql" else []
        cpu0, pg0 = tree_cpu([server.pid]), tree_cpu(pg_roots)
        for p in producers:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [
            json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1]) for p in producers
        ]
        cpu1, pg1 = tree_cpu([server.pid]), tree_cpu(pg_roots)
        elapsed = max(o["t1"] for o in outs) - min(o["t0"] for o in outs)
        with httpx.Client(base_url=f"{base}/v1", headers={"Authorization": f"Bearer {key}"}) as api:
            stored = 0
            for o in outs:
                body = api.get("/usage/summary", params={"customerId": o["customer"]}).json()
                stored += sum(m["runEvents"] for m in body["meters"])
        lost = sum(o["failed"] + o["dropped"] + o["rejected"] for o in outs)
        if stored != per * PRODUCERS or lost:
            raise RuntimeError(
                f"{backend} W{workers}: stored {stored} of {per * PRODUCERS}, {lost} lost"
            )
        drip_us, pg_us = (cpu1 - cpu0) / stored * 1e6, (pg1 - pg0) / stored * 1e6
        return {"rate": stored / elapsed, "cpu_us": drip_us + pg_us, "pg_us": pg_us}
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(30)
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _print_table(
    label: str, configs: list[tuple[str, int]], got: dict[tuple[str, int], list[dict[str, float]]]
) -> None:
    rows = []
    med = {c: statistics.median(x["rate"] for x in got[c]) for c in configs}
    for backend, workers in configs:
        rates = [x["rate"] for x in got[backend, workers]]
        cpu = statistics.median(x["cpu_us"] for x in got[backend, workers])
        rows.append(
            [
                backend,
                f"W{workers} P{PRODUCERS}",
                f"{med[backend, workers]:,.0f}",
                " / ".join(f"{x:,.0f}" for x in rates),
                f"{cpu:.1f}",
                f"{med[backend, workers] / med['sqlite', 1]:.2f}x",
            ]
        )
    share = [
        p["rate"] / q["rate"] for p, q in zip(got["postgresql", 1], got["sqlite", 1], strict=True)
    ]
    print()
    print(
        _bench.table(
            [
                "backend",
                "config",
                "events/s (median)",
                "per round",
                "server CPU us/event",
                "vs SQLite W1",
            ],
            rows,
            title=f"Ingest through the SDK (4 producer processes), {label}, rounds interleaved "
            f"(PostgreSQL W1 / SQLite W1 per round: {', '.join(f'{x:.0%}' for x in share)}):",
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--events", type=int, default=200_000, help="per trial, all producers")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--compare", metavar="DIR", help="another checkout, run side by side")
    args = parser.parse_args()
    _bench.header("ingest_sdk.py", f"{args.events:,} events per trial, {PRODUCERS} producers")
    configs = [("sqlite", 1), ("postgresql", 1), ("sqlite", 4), ("postgresql", 4)]
    trees: dict[str, str | None] = {"this checkout": None}
    if args.compare:
        trees[args.compare] = args.compare
    every = {label: {c: [] for c in configs} for label in trees}  # type: ignore[var-annotated]
    pg = Postgres()
    try:
        for r in range(args.rounds):
            for backend, workers in configs:
                # this checkout first in odd rounds, the compared one first in even rounds
                for label, tree in list(trees.items())[:: -1 if r % 2 else 1]:
                    result = trial(backend, workers, args.events, pg, tree)
                    every[label][backend, workers].append(result)
                    print(
                        f"  round {r + 1}: {backend:10s} W{workers}: {result['rate']:9,.0f} "
                        f"events/s, server CPU {result['cpu_us']:5.1f} us/event "
                        f"(PostgreSQL's {result['pg_us']:4.1f})  ({label})",
                        flush=True,
                    )
    finally:
        pg.stop()
    for label in trees:
        _print_table(label, configs, every[label])
    got: dict[tuple[str, int], list[dict[str, float]]] = every["this checkout"]
    out = _bench.Results("ingest_sdk.py")
    share = [
        pgr["rate"] / sq["rate"]
        for pgr, sq in zip(got["postgresql", 1], got["sqlite", 1], strict=True)
    ]
    out.check(
        "PostgreSQL W1 / SQLite W1 events/s (median of same-round ratios)",
        statistics.median(share) * 100,
        "%",
        f">= {TARGET_PG_SHARE:.0%}",
        statistics.median(share) >= TARGET_PG_SHARE,
    )
    return out.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
