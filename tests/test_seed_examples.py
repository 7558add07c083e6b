"""The seed README's Full Example and Async example, run verbatim, then read back."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drip import Drip, RunStatus, _default

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def snippet(heading: str) -> str:
    section = README.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match
    return match.group(1)


def run_verbatim(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    code = compile(source, "<readme>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return namespace


@pytest.fixture
def env(account: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Drip]:
    monkeypatch.setenv("DRIP_API_KEY", account.secret_key)
    monkeypatch.setenv("DRIP_BASE_URL", account.base_url)
    _default.reset_default_client()
    client = Drip()
    yield client
    client.close()
    _default.reset_default_client()


def test_full_then_async_example(env: Drip) -> None:
    full = snippet("### Full Example")
    assert 'workflow="research-agent"' in full and "drip.ping()" in full
    ns = run_verbatim(full)
    customer = ns["customer"]
    assert customer.external_customer_id == "user_123"

    summary = env.get_usage_summary(customer_id=customer.id)
    assert summary.total("llm_tokens") == 842
    assert summary.total("llm.call") == 1700 and summary.total("tool.call") == 1

    ns = run_verbatim(snippet("## Async Core SDK"))
    assert ns["customer"].id == customer.id  # the same user_123, not a second customer
    result = ns["result"]
    run = env.get_run(result.run.id)
    assert run.status == RunStatus.COMPLETED and run.customer_id == customer.id
    assert run.workflow_name == "Research Agent"
    timeline = env.get_run_timeline(result.run.id)
    assert timeline.events == [] and timeline.status == RunStatus.COMPLETED
    summary = env.get_usage_summary(customer_id=customer.id)
    assert summary.total("api_calls") == 1 and summary.total("llm_tokens") == 842
