"""Every Python snippet of README.md runs as written against the real local server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

# Top-level `async with` / `await` (as in the Async Core SDK snippet) runs the way the asyncio
# REPL would run it: compiled with top-level await allowed, awaited on a fresh loop.
RUNNER = """
import ast, asyncio, sys, types
source = sys.stdin.read()
code = compile(source, "<readme>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
module = types.ModuleType("__main__")
result = eval(code, module.__dict__)
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 8


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs_as_written(index: int, account: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    env.update(DRIP_API_KEY=account.secret_key, DRIP_BASE_URL=account.base_url)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=SNIPPETS[index],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, f"snippet {index} failed:\n{SNIPPETS[index]}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
