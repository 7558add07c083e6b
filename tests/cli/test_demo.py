"""``drip demo``: records once per database, says how to look at the data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _demo(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    done = subprocess.run(
        [sys.executable, "-m", "drip.cli", "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _usage_lines(out: str) -> list[str]:
    start = out.index("usage of customer")
    return out[start:].splitlines()[1:6]


def test_demo_is_idempotent_and_ends_with_the_commands_to_look(tmp_path: Path) -> None:
    first = _demo(tmp_path)
    assert "delivered:" in first
    assert "drip serve --db .drip/demo.db" in first
    assert "http://127.0.0.1:8787/#key=sk_" in first
    second = _demo(tmp_path)
    assert "already in this database" in second and "delivered:" not in second
    assert _usage_lines(second) == _usage_lines(first)  # the totals did not grow
    # the same runs are shown
    runs = [line.split()[1] for line in first.splitlines() if line.strip().startswith("run ")]
    assert runs and all(run in second for run in runs)
    third = _demo(tmp_path, "--again")
    assert "NEW pair of demo runs" in third
    assert _usage_lines(third) != _usage_lines(first)
