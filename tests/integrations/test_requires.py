"""``requires`` names the extra when a framework is missing."""

from __future__ import annotations

import pytest
from drip.integrations._requires import requires


def test_present_module_is_returned() -> None:
    assert requires("json", extra="x").dumps([1]) == "[1]"


def test_missing_module_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r'pip install "drip-sdk\[nothere\]"') as info:
        requires("drip_no_such_framework", extra="nothere")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(
    ("integration", "blocked", "extra"),
    [
        ("asgi", "starlette", "fastapi"),
        ("fastapi", "fastapi", "fastapi"),
        ("flask", "flask", "flask"),
        ("django", "django", "django"),
        ("celery", "celery", "celery"),
        ("requests", "requests", "requests"),
    ],
)
def test_each_web_integration_names_its_extra(integration: str, blocked: str, extra: str) -> None:
    import subprocess
    import sys

    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"try:\n    import drip.integrations.{integration}\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f'pip install "drip-sdk[{extra}]"' in out.stdout, out.stdout + out.stderr
