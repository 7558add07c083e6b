"""Server instructions per ingested event (SQLite), counted by valgrind: steady under load.

Wall-clock and CPU seconds of ``drip serve`` move by ±20% from run to run on a shared 2-core
host; instruction counts do not. This script records real SDK batches (``@metered`` calls in
runs, encoded by the SDK's delivery worker, captured with ``httpx.MockTransport``), saves the
request bodies, then runs one child process per case under ``valgrind --tool=callgrind``: each
child creates a fresh SQLite database (schema at head, one customer), ingests one warm-up batch
(statements compiled, caches filled), then ``K`` more batches through ``storage.ingest.ingest``
(parse, checks, apply, insert, rollups, commit) and writes each answer
(``routes.ingest.answer``, compact), then checkpoints the WAL into the database file. The
difference between the child with ``K`` batches and the one with none, divided by the events,
is the server's instructions per event. The HTTP layer (uvicorn, Starlette) is not counted:
measured apart (a bare ASGI app reading the same 1.2 MB bodies) it is ~0.4 µs per event.

    python benchmarks/ingest_ir.py               # needs valgrind on PATH; ~3 minutes
    python benchmarks/ingest_ir.py --batches 4   # K (default 4 batches of ~5,000 events)

Another version of drip can be counted with the same script: export it (``git archive COMMIT |
tar -x -C DIR``) and run ``PYTHONPATH=DIR python benchmarks/ingest_ir.py``; the bodies are the
SDK's of this checkout either way (``DRIP_BENCH_BODIES=FILE`` reuses saved ones).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

CUSTOMER = "cus_bench_ir"
PER_RUN = 1_000


def record(path: str, batches: int) -> None:
    """Save ``batches + 1`` SDK request bodies (one per line) to ``path``."""
    import httpx

    import drip

    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.read()
        bodies.append(body)
        n = len(json.loads(body)["items"])
        answer = {"results": [], "statuses": "c" * n, "created": n}
        return httpx.Response(200, json={**answer, "duplicates": 0, "updated": 0, "rejected": 0})

    client = drip.Drip(
        api_key="sk_bench_ir_0000000000000000",
        base_url="http://127.0.0.1:9",
        transport=httpx.MockTransport(handler),
    )
    fn = client.metered(meter="bench.ir")(lambda x: x + 1)
    runs = (batches + 1) * 5 + 1
    for _ in range(runs):
        with client.run(workflow="bench-ir", customer_id=CUSTOMER):
            for i in range(PER_RUN):
                fn(i)
    client.flush(120)
    client.close()
    with open(path, "wb") as out:
        for body in bodies[: batches + 1]:
            out.write(body + b"\n")
    if len(bodies) < batches + 1:
        raise SystemExit(f"the SDK sent {len(bodies)} batches, {batches + 1} needed")


def child(path: str, batches: int) -> None:
    from sqlalchemy import update

    from drip.models import CreateCustomerRequest
    from drip.server.keys import KeyStore
    from drip.server.routes.ingest import answer
    from drip.server.storage.customers import create_customer
    from drip.server.storage.database import Database
    from drip.server.storage.ingest import ingest
    from drip.server.storage.schema import customers

    with open(path, "rb") as f:
        bodies = f.read().splitlines()
    folder = tempfile.mkdtemp(prefix="drip-ingest-ir-")
    db = Database(f"sqlite:///{folder}/ir.db")
    db.upgrade()
    KeyStore(db).create_key()
    create_customer(db, 1, CreateCustomerRequest(externalCustomerId="bench-ir"))
    with db.write() as conn:
        conn.execute(update(customers).values(id=CUSTOMER))
    checkpointer, db._checkpointer = db._checkpointer, None  # checkpoint once, at the end
    if checkpointer is not None:
        checkpointer.close()
    events = 0
    for body in bodies[: batches + 1]:
        outcome = ingest(db, 1, body)
        answer(outcome, compact=True)
        if set(outcome.statuses) - {"created", "updated"}:
            raise SystemExit(f"not all stored: {sorted(set(outcome.statuses))}")
        events += len(outcome.statuses)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    print(f"items {events}", file=sys.stderr)
    db.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)


def count(path: str, batches: int) -> tuple[int, int]:
    """(instructions, items ingested) of a child ingesting the warm-up plus ``batches``."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--child", path, str(batches)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in out.stderr.splitlines() if "Collected" in x)
    items = next(x for x in out.stderr.splitlines() if x.startswith("items "))
    return int(line.split()[-1]), int(items.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4, help="measured batches (K)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("ingest_ir.py needs valgrind on PATH")
    saved = os.environ.get("DRIP_BENCH_BODIES")
    with tempfile.TemporaryDirectory(prefix="drip-ingest-ir-") as folder:
        path = saved or os.path.join(folder, "bodies.jsonl")
        if not saved:
            record(path, args.batches)
        base, base_items = count(path, 0)
        full, full_items = count(path, args.batches)
    events = full_items - base_items
    per_event = (full - base) / events
    print(f"server instructions per ingested event, {events:,} events (callgrind)")
    print(f"storage.ingest.ingest + answer + WAL checkpoint   {per_event:10,.0f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
