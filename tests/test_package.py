"""The public face: __all__, cheap import, and drip.integrations from wheel and editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import drip

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_pinned() -> None:
    assert sorted(drip.__all__) == drip.__all__
    expected = {
        "AsyncDrip", "Drip", "DripAPIError", "DripError", "DripConfigurationError",
        "DripValidationError", "DripNetworkError", "DripRateLimitError", "configure", "drip",
        "metered", "run", "customer", "flush", "shutdown", "stats",
    }  # fmt: skip
    assert expected <= set(drip.__all__)
    for name in drip.__all__:
        assert hasattr(drip, name), name


def test_import_drip_pulls_in_no_server_or_framework() -> None:
    code = (
        "import sys, drip; heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi','starlette','sqlalchemy','uvicorn','flask','langchain_core','openai',"
        "'anthropic','litellm','agents','langgraph','langchain','httpx2',"
        "'django','celery','kombu','werkzeug','requests','asgiref'} "
        "or m.startswith('drip.server') or m.startswith('drip.integrations.')]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_integrations_import_from_the_editable_install() -> None:
    import drip.integrations

    assert Path(drip.integrations.__file__).resolve() == ROOT / "integrations" / "__init__.py"


def test_integrations_import_from_the_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("drip_sdk-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "drip/integrations/__init__.py" in names
    assert "drip/py.typed" in names
    assert "drip/data/prices.json" in names  # drip.pricing's shipped table
    assert not any(n.startswith("integrations/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "import drip.integrations as i, drip; print(i.__file__); print(drip.__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    path, version = out.stdout.split()
    assert Path(path).is_relative_to(site)
    assert version == drip.__version__


def test_public_names_say_drip() -> None:
    # reprs, tracebacks and docs say drip.Run, not the private module that defines it
    for name in ("Run", "EventHandle", "Drip", "AsyncDrip", "DripError", "FlushReport"):
        assert getattr(drip, name).__module__ == "drip", name
    assert drip.metered.__module__ == "drip" and repr(drip.Run) == "<class 'drip.Run'>"
    # the wire models keep theirs: pydantic resolves their annotations there
    assert drip.RunDetails.__module__.startswith("drip.models")
