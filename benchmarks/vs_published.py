"""Caller time per event: our ``@metered`` call vs the published drip-sdk 0.1.2 ``emit_event``.

Both record events into runs on the same ``drip serve`` subprocess (temporary SQLite file).

* Published: drip-sdk 0.1.2 lives in its own virtualenv (``benchmarks/.venv012``, created on
  first use with ``python -m venv`` + ``pip install drip-sdk==0.1.2``; ignored by git; another
  place can be given with ``DRIP_BENCH_VENV012``). A small script runs there as a subprocess:
  ``Drip(api_key=..., base_url=..., resilience=False)``, ``start_run(...)``, then, on each
  command read from its stdin, times K blocking ``emit_event`` calls and prints us/call.
* Ours: ``@client.metered`` inside a run, K_OURS calls per repeat, timed the same way; the
  records are flushed after each timed loop (not timed). Delivery is live (default settings).

Repeats are interleaved (published, ours, published, ours, ...), medians. Caller time per event
is the whole call (the bare function included, so ours is not flattered). As a second,
stricter figure, ours is also given with the flush counted: the caller's loop plus the wait
until the server has answered for every record, per event. At the end the server must hold
exactly the events both clients sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import _bench

import drip

PUBLISHED = "drip-sdk==0.1.2"
REPEATS = 5
K = 100  # published emit_event calls per repeat (each one is an HTTP round trip)
K_OURS = 20_000  # our metered calls per repeat
WARMUP = 20
TARGET = 500.0  # published time / our time
VENV = Path(os.environ.get("DRIP_BENCH_VENV012") or _bench.HERE / ".venv012")

PUBLISHED_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from importlib.metadata import version
    import drip
    from drip import Drip

    assert version("drip-sdk") == "0.1.2", version("drip-sdk")
    assert "site-packages" in drip.__file__, drip.__file__
    base_url, key, customer_id = sys.argv[1:4]
    client = Drip(api_key=key, base_url=base_url, resilience=False)
    run = client.start_run(customer_id=customer_id, workflow_id="bench-published")
    emitted = 0
    print(json.dumps({"run_id": run.id}), flush=True)
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter_ns()
        for i in range(n):
            client.emit_event(run_id=run.id, event_type="bench.published", quantity=1)
        elapsed = time.perf_counter_ns() - t0
        emitted += n
        print(json.dumps({"ns": elapsed, "n": n}), flush=True)
    client.end_run(run.id, status="COMPLETED")
    print(json.dumps({"emitted": emitted}), flush=True)
    """
)


def bare(x: int) -> int:
    return x + 1


def venv_python() -> Path | None:
    """The 0.1.2 virtualenv's interpreter, created on first use; None if pip cannot get it."""
    python = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    probe = "import importlib.metadata as m; print(m.version('drip-sdk'))"
    if python.exists():
        found = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True)
        if found.stdout.strip() == "0.1.2":
            return python
    print(f"creating {VENV} with {PUBLISHED} (once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PUBLISHED],
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        print(f"could not install {PUBLISHED}:\n{installed.stdout}{installed.stderr}")
        return None
    return python


class Published:
    """The 0.1.2 client in its virtualenv, driven line by line over stdin/stdout."""

    def __init__(self, python: Path, server: _bench.DripServer, customer: str, cwd: str) -> None:
        script = Path(cwd) / "published_emit.py"
        script.write_text(PUBLISHED_SCRIPT)
        # -I: the published package, never this repository's drip from the working directory
        self.proc = subprocess.Popen(
            [str(python), "-I", str(script), server.url, server.key, customer],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        self.run_id = self._read()["run_id"]

    def _read(self) -> dict[str, int | str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the published client's script failed (exit {self.proc.wait()})")
        result: dict[str, int | str] = json.loads(line)
        return result

    def emit(self, n: int) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return int(self._read()["ns"])

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        emitted = int(self._read()["emitted"])
        self.proc.wait(30)
        return emitted


def main() -> int:
    args = _bench.arguments(__doc__.splitlines()[0])
    _bench.header("vs_published.py", f"{REPEATS} interleaved repeats, medians")
    results = _bench.Results("vs_published")
    python = venv_python()
    if python is None:
        results.check("published client installed", 0, "", PUBLISHED, None, note="skipped")
        print("SKIPPED: the published client could not be installed (no package index?)")
        return results.finish(args.json)

    with _bench.DripServer() as server, tempfile.TemporaryDirectory() as cwd:
        print(f"server: drip serve subprocess at {server.url}, SQLite {server.db}")
        client = drip.Drip(api_key=server.key, base_url=server.url)
        customer = client.create_customer(external_customer_id="bench-vs-published").id
        published = Published(python, server, customer, cwd)
        published.emit(WARMUP)  # connection set up, first-call costs
        fn = client.metered(meter="bench.ours")(bare)
        run_ids: list[str] = []
        with_flush: list[float] = []

        def ours() -> int:
            calls = range(K_OURS)
            with client.run(workflow="bench-vs-published", customer_id=customer) as run:
                t0 = time.perf_counter_ns()
                for i in calls:
                    fn(i)
                elapsed = time.perf_counter_ns() - t0
            client.flush(120)
            with_flush.append((time.perf_counter_ns() - t0) / K_OURS)
            run_ids.append(run.id)
            return elapsed

        raw = _bench.interleave([("published", lambda: published.emit(K)), ("ours", ours)], REPEATS)
        emitted = published.close()

        stats = client.stats()
        ours_stored = sum(client.get_run(r).totals.event_count for r in run_ids)
        published_stored = client.get_run(str(published.run_id)).totals.event_count
        client.close()

    pub_us = _bench.median(raw["published"]) / K / 1000
    ours_us = _bench.median(raw["ours"]) / K_OURS / 1000
    ours_flush_us = _bench.median(with_flush) / 1000
    rows = [
        ("published 0.1.2: emit_event (blocking HTTP)", f"{K:,}", _bench.fmt(pub_us, 2), "1x"),
        (
            "ours: @metered call in a run",
            f"{K_OURS:,}",
            _bench.fmt(ours_us, 3),
            f"{pub_us / ours_us:,.0f}x less",
        ),
        (
            "ours, counting the flush until the server answered",
            f"{K_OURS:,}",
            _bench.fmt(ours_flush_us, 3),
            f"{pub_us / ours_flush_us:,.0f}x less",
        ),
    ]
    print()
    print(
        _bench.table(
            ["client", "calls/repeat", "us per event", "vs published"],
            rows,
            title="Caller time per event:",
        )
    )
    expected_ours = REPEATS * K_OURS
    print(
        f"\nserver: published run holds {published_stored:,} events (sent {emitted:,}); our "
        f"{len(run_ids)} runs hold {ours_stored:,} (sent {expected_ours:,}); our client: "
        f"recorded {stats.recorded:,}, sent {stats.sent:,}, dropped {stats.dropped}"
    )
    ratio = pub_us / ours_us
    results.check("published us / our us per event", ratio, "x", f">= {TARGET:g}x", ratio >= TARGET)
    results.check("same, ours counting the flush", pub_us / ours_flush_us, "x", "", None)
    exact = published_stored == emitted and ours_stored == expected_ours and not stats.dropped
    results.check("server stored every event of both", int(exact), "", "1", exact)
    return results.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
