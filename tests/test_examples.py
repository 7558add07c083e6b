"""Every script in examples/ runs against the real local server and says what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

EXPECT = {
    "decorator.py": ["llm_tokens: ", "tool_calls: 1"],
    "run_block.py": ["COMPLETED", "FAILED  ", "ValueError", "tool.fetch", "report.sent"],
    "async_agent.py": ["5 requests, 15 tokens streamed", "'llm_tokens': 15.0"],
    "threads.py": ["loaded 900 rows in 9 metered calls", "total quantity on the server: 900"],
    "otel_correlation.py": ["correlation id"],
    # -- LLM integrations (issue 9): exact tokens and cost, read back from the server
    "llm_openai.py": [
        "streamed text: 'Tides follow the moon.'",
        "llm_tokens: 960 tokens, model=gpt-4o-mini-2024-07-18, cost_usd=0.000111, complete=True",
        "llm_tokens: 0 tokens, model=gpt-4o-mini-2024-07-18, cost_usd=None, complete=False",
    ],
    "llm_anthropic.py": [
        "llm_tokens: 3052 tokens (cache reads 3000), streamed=False, cost_usd=0.001536",
        "llm_tokens: 3052 tokens (cache reads 3000), streamed=True, cost_usd=0.001536",
    ],
    "llm_langgraph.py": ["run 'Tide Agent' COMPLETED", "tool_calls: 1", "llm_tokens: 255 tokens"],
    "llm_litellm.py": ["llm_tokens: 30 tokens, streamed=False", "streamed=True"],
    "llm_openai_agents.py": ["llm_tokens: 149 tokens, cost_usd=2.64e-05"],
    # -- web integrations (issue 10) --
    "fastapi_api.py": [
        "acme: 6 requests, 48 tokens",
        "globex: 1 requests, 27 tokens",
        "streamed request run: COMPLETED",
        "'route': '/stream/{topic}'",
    ],
    "flask_api.py": [
        "acme: 4 requests, 400 rows",
        "globex: 1 requests, 210 rows",
        "streamed request run 'GET /export/<name>': COMPLETED",
        "'route': '/export/<name>'",
    ],
    "django_api.py": [
        "export sent: ['summary: 3 pages', 'detail: 12 pages']",
        "acme: api_calls 4, llm_tokens 5, pages_rendered 18",
        "globex: api_calls 1, pages_rendered 15",
        "GET /summaries/<str:topic>/: COMPLETED",
        "streamed request run 'GET /export/': COMPLETED",
    ],
    "celery_tasks.py": [
        "rows: 750, retried task: 250, alone: 250",
        "'nightly-import' has 4 child runs:",
        "tasks.flaky_export COMPLETED, 3 event(s)",
        "globex: its own run 'tasks.enrich_batch', parent None",
        "acme rows_enriched: 1500",
    ],
    "two_services.py": [
        "B trusts A: the same run; A's run holds ['api_calls', 'api_calls', "
        "'reports', 'rows_scanned']",
        "B does not: two runs",
    ],
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECT)


def _run(name: str, account: Any, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    env.update(DRIP_API_KEY=account.secret_key, DRIP_BASE_URL=account.base_url, DRIP_STRICT="1")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for expected in EXPECT[name]:
        assert expected in proc.stdout, f"{expected!r} not in:\n{proc.stdout}"


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example(name: str, account: Any, tmp_path: Path) -> None:
    _run(name, account, tmp_path)


#: examples that read back what they recorded by customer (usage summaries, run lists)
READ_BACK = ["celery_tasks.py", "django_api.py", "fastapi_api.py", "flask_api.py"]


def test_examples_read_back_only_their_own_records(account: Any, tmp_path: Path) -> None:
    """Run again, or after another example, against the same database (as
    ``DRIP_BASE_URL=local`` keeps one in ``.drip/``), each says the same: it reads back what
    this execution recorded, not the customers' earlier runs (which made ``[run] = ...``
    unpack several and fail)."""
    for name in [*READ_BACK, *READ_BACK]:
        _run(name, account, tmp_path)
