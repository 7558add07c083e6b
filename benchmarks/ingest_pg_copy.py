"""PostgreSQL bulk inserts of events: ``unnest … ON CONFLICT`` vs ``COPY``, CPU per row.

    python benchmarks/ingest_pg_copy.py postgresql://postgres@127.0.0.1:PORT/postgres [--reps 8]

Makes a fresh database on the server named (schema at the migrations' head, dropped at the
end), then inserts batches of 5,000 rows of the SDK's usual event (the short ``COMMON_COLUMNS``
row) into ``events`` with each way, interleaved batch by batch, each in its own transaction:

* ``unnest``: ``postgres.insert_unnest`` (``INSERT … SELECT FROM unnest(binary arrays) WITH
  ORDINALITY ORDER BY ord ON CONFLICT DO NOTHING``), what every batch took before;
* ``copy``: ``postgres.insert_copy`` (``COPY … FROM STDIN (FORMAT BINARY)`` in a savepoint),
  what a batch of new rows takes now;
* ``copy, then unnest``: a batch whose last row is already stored: the ``COPY`` fails, is
  rolled back, and the batch goes in by ``unnest`` (a retried batch's path);

and prints, per row, the median of this process's thread CPU and of the server backend's CPU
(``/proc/PID/schedstat`` of the backend serving the connection; the server must run on this
machine), plus the wall time. Ids are the SDK's (time-ordered) or, with ``--uuid4``, random.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from drip.server.storage import postgres
from drip.server.storage.database import Database
from drip.server.storage.ingest import COMMON_COLUMNS
from drip.server.storage.schema import events

ROWS = 5_000


def _backend_cpu(pid: int) -> float:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


class _Rows:
    def __init__(self, random_ids: bool) -> None:
        self.random_ids = random_ids
        self.clock = 0

    def batch(self) -> list[tuple[Any, ...]]:
        ms = int(time.time() * 1000)
        run = f"run_{(ms << 80) | random.getrandbits(80):032x}"
        out = []
        for _ in range(ROWS):
            self.clock += 20
            us = self.clock
            eid = (
                f"evt_{uuid.uuid4().hex}"
                if self.random_ids
                else f"evt_{(ms << 80) | random.getrandbits(80):032x}"
            )
            stamp = f"2026-12-02T{us // 3_600_000_000 % 24:02d}:{us // 60_000_000 % 60:02d}:"
            stamp += f"{us // 1_000_000 % 60:02d}.{us % 1_000_000:06d}Z"
            out.append((1, eid, run, "cus_x", "llm", "tokens", 3.0, stamp, 1.5, "ok"))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("postgres_url", help="a PostgreSQL server to make a database on")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--uuid4", action="store_true", help="random ids instead of the SDK's")
    args = parser.parse_args()
    admin = create_engine(postgres.driver_url(args.postgres_url), isolation_level="AUTOCOMMIT")
    name = f"drip_bench_copy_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres.driver_url(args.postgres_url)).set(database=name)
    db = Database(url.render_as_string(hide_password=False))
    try:
        db.upgrade()
        rows = _Rows(args.uuid4)

        def unnest(conn: Connection, batch: list[tuple[Any, ...]]) -> None:
            assert postgres.insert_unnest(conn, events, COMMON_COLUMNS, batch) is None

        def copy(conn: Connection, batch: list[tuple[Any, ...]]) -> None:
            assert postgres.insert_copy(conn, events, COMMON_COLUMNS, batch)

        def retried(conn: Connection, batch: list[tuple[Any, ...]]) -> None:
            batch[-1] = stored[0]  # a row already stored: the COPY fails, unnest skips it
            assert not postgres.insert_copy(conn, events, COMMON_COLUMNS, batch)
            went_in = postgres.insert_unnest(conn, events, COMMON_COLUMNS, batch)
            assert went_in is not None and len(went_in) == ROWS - 1

        ways: dict[str, Callable[[Connection, list[tuple[Any, ...]]], None]] = {
            "unnest ON CONFLICT": unnest,
            "COPY in a savepoint": copy,
            "COPY fails, then unnest": retried,
        }
        got: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
        stored: list[tuple[Any, ...]] = []
        with db.engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            conn.commit()
            for _ in range(args.reps):
                for way, insert in ways.items():
                    batch = rows.batch()
                    stored = stored or batch[:1]
                    c0, p0, w0 = time.thread_time(), _backend_cpu(pid), time.perf_counter()
                    with conn.begin():
                        insert(conn, batch)
                    c1, w1 = time.thread_time(), time.perf_counter()
                    time.sleep(0.05)  # the backend's CPU figure settles
                    p1 = _backend_cpu(pid)
                    got[way].append(((c1 - c0) / ROWS, (p1 - p0) / ROWS, (w1 - w0) / ROWS))
            count = conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
        expected = ROWS * args.reps * len(ways) - args.reps
        assert count == expected, (count, expected)
        ids = "random uuid4" if args.uuid4 else "the SDK's (time-ordered)"
        print(f"{ROWS:,} rows per batch, {args.reps} batches per way, ids {ids}; µs per row")
        print(f"{'way':<26} {'client CPU':>10} {'server CPU':>10} {'sum':>6} {'wall':>6}")
        for way, found in got.items():
            client, server, wall = (statistics.median(x[i] for x in found) * 1e6 for i in range(3))
            print(f"{way:<26} {client:>10.2f} {server:>10.2f} {client + server:>6.2f} {wall:>6.2f}")
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
