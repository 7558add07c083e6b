"""Server CPU per event of real SDK batches posted to ``drip serve`` (SQLite), side by side.

The SDK records runs of ``@metered`` calls; its delivery worker's request bodies are captured
with ``httpx.MockTransport`` (so the batches are exactly what the SDK sends, ~5,000 events
each), then posted one after another to a fresh ``drip serve`` subprocess
(``POST /v1/ingest?results=compact``, what the SDK asks for). Measured: the server process's
CPU (user + system, all threads, from ``/proc``) per event, and events/s while posting. With
``--compare DIR`` (another checkout, e.g. ``git archive COMMIT | tar -x -C DIR``) a server run
from DIR (``PYTHONPATH=DIR``) gets the same bodies, the two interleaved round by round; the
ratio of the medians is the result that survives a noisy host best.

    python benchmarks/ingest_replay.py                          # ~1 minute
    python benchmarks/ingest_replay.py --compare /tmp/before --rounds 5

Every answer must say every item was created (checked). On two cores the client's ~3-4 µs of
CPU per event and the server's share them: ``throughput.py``'s ≥ 100,000 events/s needs the
server near 7 µs per event or below, the figure printed against it here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import _bench
import httpx
from ingest_ir import record

#: issue 6's end-to-end target needs about this much server CPU per event, or less, here
GUIDE_US = 7.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replay(bodies: list[bytes], tree: str | None) -> tuple[float, float]:
    """(server CPU µs per event, events/s) of a fresh server (run from ``tree`` if given)."""
    saved = os.environ.get("PYTHONPATH")
    if tree is not None:
        os.environ["PYTHONPATH"] = tree
    try:
        server = _bench.DripServer().start()
    finally:
        if tree is not None:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    try:
        headers = {"Authorization": f"Bearer {server.key}", "content-type": "application/json"}
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=300) as api:
            customer = api.post("/customers", json={"externalCustomerId": "replay"}).json()["id"]
            mine = [body.replace(b"cus_bench_ir", customer.encode()) for body in bodies]
            warm, rest = mine[0], mine[1:]
            api.post("/ingest?results=compact", content=warm).raise_for_status()
            time.sleep(1.2)  # the warm-up's WAL checkpoint is not counted
            events = 0
            cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
            for body in rest:
                answer = api.post("/ingest?results=compact", content=body)
                answer.raise_for_status()
                statuses = answer.json()["statuses"]
                if set(statuses) - {"c", "u"}:
                    raise SystemExit(f"not every item was stored: {sorted(set(statuses))}")
                events += len(statuses)
            elapsed = time.perf_counter() - t0
            time.sleep(1.5)  # the background WAL checkpoint of these batches is counted
            cpu = cpu_seconds(server.pid) - cpu0
        return cpu / events * 1e6, events / elapsed
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", metavar="DIR", help="another checkout, run side by side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20, help="measured batches per round")
    args = parser.parse_args()
    _bench.header("ingest_replay.py")
    with tempfile.TemporaryDirectory(prefix="drip-replay-") as folder:
        path = os.path.join(folder, "bodies.jsonl")
        record(path, args.batches)
        with open(path, "rb") as f:
            bodies = f.read().splitlines()
    trees: dict[str, str | None] = {"this checkout": None}
    if args.compare:
        trees[f"--compare {args.compare}"] = args.compare
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            cpu, rate = replay(bodies, tree)
            got[name].append((cpu, rate))
            print(f"round {r + 1}: {name:28s} {cpu:6.2f} µs CPU/event {rate:10,.0f} events/s")
    print()
    medians = {name: statistics.median(c for c, _ in runs) for name, runs in got.items()}
    for name, runs in got.items():
        rate = statistics.median(r for _, r in runs)
        print(f"median: {name:28s} {medians[name]:6.2f} µs CPU/event {rate:10,.0f} events/s")
    if args.compare:
        other = medians[f"--compare {args.compare}"]
        print(
            f"this checkout / compared: {medians['this checkout'] / other:.2f}x the CPU per event"
        )
    mine = medians["this checkout"]
    verdict = "PASS" if mine <= GUIDE_US else "FAIL"
    print(
        f"server CPU per event {mine:.2f} µs (guide for 100k events/s here: <= {GUIDE_US}): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
