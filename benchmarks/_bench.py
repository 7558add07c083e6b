"""Shared helpers of the benchmarks: timing, tables, results, and a ``drip serve`` subprocess.

Not a benchmark itself. Every script in this folder imports it as ``_bench`` (the folder is on
``sys.path`` when a script runs), so each script stays runnable on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

median = statistics.median


def machine() -> str:
    """One line saying where the numbers come from."""
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


#: the peers' notes (shared/reference/peers-instrumentation.md, A.1): ``f(1)`` in a for loop,
#: loop included, on this machine type the day they measured
REFERENCE_CALL_NS = 25.5


def _bare(x: int) -> int:
    return x + 1


def speed() -> str:
    """How fast this machine is right now: a bare call in a loop, against the peers' day."""
    times = []
    for _ in range(5):
        calls = range(200_000)
        t0 = time.perf_counter_ns()
        for i in calls:
            _bare(i)
        times.append((time.perf_counter_ns() - t0) / 200_000)
    ns = median(times)
    return (
        f"machine speed now: a bare call in a loop takes {ns:.1f} ns (the peers' reference: "
        f"{REFERENCE_CALL_NS} ns, so this run is {ns / REFERENCE_CALL_NS:.1f}x slower)"
    )


def header(script: str, detail: str = "") -> None:
    """The first lines every script prints."""
    print(f"{script}: {machine()}" + (f"; {detail}" if detail else ""))
    print(speed(), flush=True)


def fmt(value: float, digits: int = 0) -> str:
    """A number with thousands separators."""
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """A plain-text table: text columns left-aligned, everything else right-aligned."""
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    numeric = [
        all(_looks_numeric(row[i]) for row in text_rows) if text_rows else False
        for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    out = [title] if title else []
    out.append(line(list(headers)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in text_rows)
    return "\n".join(out)


def _looks_numeric(cell: str) -> bool:
    stripped = cell.replace(",", "").replace("x", "").replace("%", "").strip()
    for suffix in (" ns", " us", " µs", " B"):
        stripped = stripped.removesuffix(suffix)
    try:
        float(stripped)
    except ValueError:
        return cell in ("-", "")
    return True


class Results:
    """The targets a script checks: printed as a PASS/FAIL table, optionally saved as JSON."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.rows: list[dict[str, Any]] = []

    def check(
        self, name: str, value: float, unit: str, target: str, ok: bool | None, note: str = ""
    ) -> None:
        """Record one measured value; ``ok`` None means informative only (no target)."""
        self.rows.append(
            {"name": name, "value": value, "unit": unit, "target": target, "ok": ok, "note": note}
        )

    @property
    def passed(self) -> bool:
        return all(row["ok"] is not False for row in self.rows)

    def render(self) -> str:
        rows = [
            (
                r["name"],
                f"{fmt(r['value'], 2 if abs(r['value']) < 100 else 0)} {r['unit']}",
                r["target"] or "-",
                "-" if r["ok"] is None else ("PASS" if r["ok"] else "FAIL"),
            )
            for r in self.rows
        ]
        return table(["result", "measured", "target", "verdict"], rows, title="Targets:")

    def finish(self, json_path: str | None) -> int:
        """Print the verdicts, write them to ``json_path``; the exit status (0 = all passed)."""
        print()
        print(self.render())
        if json_path:
            Path(json_path).write_text(
                json.dumps({"script": self.script, "machine": machine(), "results": self.rows})
            )
        return 0 if self.passed else 1


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", metavar="PATH", help="also write the results to this file")
    return parser.parse_args()


def interleave(
    cases: Sequence[tuple[str, Callable[[], int]]], repeats: int
) -> dict[str, list[int]]:
    """Run each case once per repeat, in turn (a, b, c, a, b, c, ...): elapsed ns per repeat."""
    out: dict[str, list[int]] = {name: [] for name, _ in cases}
    for _ in range(repeats):
        for name, case in cases:
            out[name].append(case())
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: this interpreter; ``-P`` (3.11+): ``-m`` does not put the working directory first on
#: ``sys.path``, so ``PYTHONPATH=OTHER_CHECKOUT`` picks the drip a server runs even when the
#: script is started from inside a checkout (the ``--compare`` modes rely on it)
PYTHON = [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else [])]


def drip_command(*args: str) -> list[str]:
    """The ``drip`` command of this interpreter's environment."""
    return [*PYTHON, "-m", "drip.cli", *args]


class DripServer:
    """``drip serve`` over a fresh SQLite file, as a subprocess (its CPU is not ours).

    The key comes from ``drip keys create --db``; ``url`` is the base URL (no ``/v1``).
    """

    def __init__(self, *serve_args: str) -> None:
        self._serve_args = serve_args  # more ``drip serve`` options (``--http h11``, ...)
        self._dir = tempfile.TemporaryDirectory(prefix="drip-bench-")
        self.db = os.path.join(self._dir.name, "bench.db")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = os.path.join(self._dir.name, "server.log")

    def start(self) -> DripServer:
        created = subprocess.run(
            drip_command("keys", "create", "--db", self.db),
            capture_output=True,
            text=True,
            check=True,
        )
        self.key = created.stdout.strip().splitlines()[-1]
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                drip_command(
                    *("serve", "--db", self.db, "--port", str(self.port)),
                    *("--log-level", "warning", *self._serve_args),
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"drip serve did not start:\n{Path(self._log).read_text()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the server is not running"
        return self._proc.pid

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._dir.cleanup()

    def __enter__(self) -> DripServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
