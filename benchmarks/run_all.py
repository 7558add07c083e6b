"""Run every benchmark, one subprocess each, then print one table of all targets.

    python benchmarks/run_all.py                  # all of them (~2-3 minutes on 2 cores)
    python benchmarks/run_all.py overhead memory  # some of them
    python benchmarks/run_all.py --markdown out.md --strict

Exit status: 1 if a benchmark crashed, or (with ``--strict``) if a target was missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _bench

SCRIPTS = ["overhead", "run_cost", "throughput", "vs_published", "memory", "import_time"]


def markdown(summary: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [
        "| benchmark | result | measured | target | verdict |",
        "|---|---|---:|---|---|",
    ]
    for script, row in summary:
        value = float(row["value"])
        shown = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        verdict = {None: "-", True: "PASS", False: "**FAIL**"}[row["ok"]]
        measured = f"{shown} {row['unit']}".strip()
        lines.append(
            f"| {script} | {row['name']} | {measured} | {row['target'] or '-'} | {verdict} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the drip benchmarks.")
    parser.add_argument("only", nargs="*", help=f"benchmarks to run: {', '.join(SCRIPTS)}")
    parser.add_argument("--markdown", metavar="PATH", help="write the summary as Markdown")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)} (choose from {', '.join(SCRIPTS)})")
    chosen = args.only or SCRIPTS
    print(f"drip benchmarks: {_bench.machine()}\n", flush=True)

    summary: list[tuple[str, dict[str, Any]]] = []
    crashed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            out = Path(tmp) / f"{name}.json"
            print(f"=== {name}.py " + "=" * 60, flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(_bench.HERE / f"{name}.py"), "--json", str(out)],
                cwd=_bench.REPO,
            )
            print(f"--- {name}.py: {time.perf_counter() - t0:.0f} s, exit {proc.returncode}\n")
            if not out.exists():
                crashed.append(name)
                continue
            summary.extend((name, row) for row in json.loads(out.read_text())["results"])

    rows = [
        (
            script,
            row["name"],
            f"{float(row['value']):,.2f} {row['unit']}",
            row["target"] or "-",
            {None: "-", True: "PASS", False: "FAIL"}[row["ok"]],
        )
        for script, row in summary
    ]
    print(
        _bench.table(
            ["benchmark", "result", "measured", "target", "verdict"],
            rows,
            title=f"Summary ({time.perf_counter() - started:.0f} s, {_bench.machine()}):",
        )
    )
    for name in crashed:
        print(f"CRASHED: {name}.py wrote no results")
    if args.markdown:
        Path(args.markdown).write_text(markdown(summary) + "\n")
    missed = [row for _, row in summary if row["ok"] is False]
    return 1 if crashed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
