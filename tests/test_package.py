"""The public face: __all__, cheap import, and drip.integrations from wheel and editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(folder), str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return next(folder.glob("drip_sdk-*.whl"))


def _tracked(pattern: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_the_wheel_holds_every_module_of_the_tree(wheel: Path) -> None:
    # a package left out of pyproject.toml's list goes unseen by an editable install (its
    # finder maps every name to the tree) and breaks ``import drip`` from the wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "drip/integrations/" + name[len("integrations/") :] if name.startswith("integrations/")
        else name
        for name in _tracked("drip/*.py") + _tracked("integrations/*.py")
    }  # fmt: skip
    assert expected, "no module found"
    assert sorted(expected - names) == []
    for data in ("drip/py.typed", "drip/data/prices.json", "drip/server/static/dashboard.html",
                 "drip/server/storage/migrations/script.py.mako"):  # fmt: skip
        assert data in names
    assert not any(n.startswith("integrations/") for n in names)


def test_every_module_imports_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -S: no .pth file is read, so the editable install's finder is not there to fill gaps;
    # the dependencies come from this environment's site-packages, after the wheel
    deps = [p for p in sys.path if p.endswith("site-packages")]
    code = r"""
import importlib, pkgutil, sys, drip
problems, imported = [], 0
for module in pkgutil.walk_packages(drip.__path__, "drip."):
    if module.name.endswith(".__main__"):  # runs the command line
        continue
    try:
        importlib.import_module(module.name)
        imported += 1
    except ImportError as exc:  # an optional dependency missing here is not the wheel's fault
        if (exc.name or "drip").split(".")[0] == "drip":
            problems.append(f"{module.name}: {exc!r}")
    except Exception as exc:  # noqa: BLE001 - configured at import (Django's settings)
        if "drip" in type(exc).__module__:
            problems.append(f"{module.name}: {exc!r}")
outside = sorted({m.__name__ for m in list(sys.modules.values())
                  if m.__name__.split(".")[0] == "drip" and getattr(m, "__file__", None)
                  and not m.__file__.startswith(sys.argv[1])})
print(len(problems + outside)); print(*problems, sep="\n"); print(*outside, sep="\n")
print(imported, drip.__version__, drip.integrations.__file__)
"""
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": os.pathsep.join([str(site), *deps]), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "0", out.stdout
    imported, version, path = out.stdout.split()[-3:]
    assert int(imported) > 60  # the walk went through the wheel, server and integrations too
    assert Path(path).is_relative_to(site)
    assert version == drip.__version__


def test_public_names_say_drip() -> None:
    # reprs, tracebacks and docs say drip.Run, not the private module that defines it
    for name in ("Run", "EventHandle", "Drip", "AsyncDrip", "DripError", "FlushReport"):
        assert getattr(drip, name).__module__ == "drip", name
    assert drip.metered.__module__ == "drip" and repr(drip.Run) == "<class 'drip.Run'>"
    # the wire models keep theirs: pydantic resolves their annotations there
    assert drip.RunDetails.__module__.startswith("drip.models")
