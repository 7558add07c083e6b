"""Each LLM integration imports its framework in its own module and names its extra."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CASES = [
    ("openai", "openai", "openai"),
    ("anthropic", "anthropic", "anthropic"),
    ("langchain", "langchain_core", "langchain"),
    ("litellm", "litellm", "litellm"),
    ("openai_agents", "agents", "openai-agents"),
]


@pytest.mark.parametrize(("integration", "framework", "extra"), CASES)
def test_a_missing_framework_names_the_extra(integration: str, framework: str, extra: str) -> None:
    # a meta-path finder that hides the framework, in a fresh interpreter
    code = f"""
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {framework!r} or name.startswith({framework!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
try:
    import drip.integrations.{integration}
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f'pip install "drip-sdk[{extra}]"' in out.stdout, out.stdout + out.stderr
    assert f"drip.integrations.{integration} needs {framework!r}" in out.stdout


@pytest.mark.parametrize(("integration", "framework", "extra"), CASES)
def test_importing_one_integration_imports_no_other_framework(
    integration: str, framework: str, extra: str
) -> None:
    others = sorted({f for _, f, _ in CASES} - {framework, "openai"} - {"langchain_core"})
    code = (
        f"import sys, drip.integrations.{integration}; "
        f"print(sorted(m for m in {others!r} if m in sys.modules))"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # litellm: no fetch at import
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"
