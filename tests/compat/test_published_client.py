"""The published drip-sdk 0.1.2 client, unchanged, against this repository's local server.

It runs in its own virtualenv (the published package is also called ``drip``), created once and
reused: ``$DRIP_COMPAT_VENV`` or ``<tmp>/drip-compat-0.1.2``. The test is skipped only when pip
cannot reach the package index, and never under CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

PUBLISHED = "drip-sdk==0.1.2"
# read at import: the autouse fixture clears DRIP_* variables before each test runs
VENV = Path(os.environ.get("DRIP_COMPAT_VENV") or Path(tempfile.gettempdir()) / "drip-compat-0.1.2")
IN_CI = bool(os.environ.get("CI"))
SCRIPT = Path(__file__).with_name("published_client_script.py")
PUBLIC_SCRIPT = Path(__file__).with_name("published_public_key_script.py")
_OFFLINE = (
    "connection",
    "network is unreachable",
    "temporary failure in name resolution",
    "no matching distribution",
)


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _installed() -> bool:
    if not _python().exists():
        return False
    probe = "import importlib.metadata as m; print(m.version('drip-sdk'))"
    result = subprocess.run([str(_python()), "-c", probe], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == "0.1.2"


def _ensure_venv() -> Path:
    """Build the shared virtualenv once. Several test runs may start at the same time: the
    build is serialized by an exclusive lock on a file beside it (the second run waits, then
    finds it installed), and done in a temporary folder renamed into place, so a run never sees
    a half-built virtualenv, nor one another run is clearing."""
    if _installed():
        return _python()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.with_name(VENV.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            _build()
    return _python()


def _build() -> None:
    """Create the virtualenv in a sibling temporary folder, then rename it to ``VENV``."""
    build = Path(tempfile.mkdtemp(prefix=VENV.name + ".build-", dir=VENV.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(build)], check=True)
        result = subprocess.run(
            [str(build / "bin/python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", PUBLISHED],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr).lower()
            if not IN_CI and any(sign in output for sign in _OFFLINE):
                pytest.skip(f"pip cannot reach the package index to install {PUBLISHED}")
            pytest.fail(f"installing {PUBLISHED} failed:\n{result.stdout}\n{result.stderr}")
        # a broken leftover (no drip-sdk 0.1.2 in it) is replaced; the lock is ours
        if VENV.exists():
            shutil.rmtree(VENV)
        # absolute paths in the venv's scripts name the build folder; the interpreter
        # finds its site-packages from pyvenv.cfg next to it, so ``bin/python`` works
        os.rename(build, VENV)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)


@pytest.fixture(scope="module")
def published_python() -> Path:
    return _ensure_venv()


def _run(python: Path, script: Path, base_url: str, key: str, cwd: Path) -> list[str]:
    """Run one script in the published client's virtualenv; the names of its passed checks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIP_", "PYTHON"))}
    result = subprocess.run(
        [str(python), str(script), base_url, key],
        capture_output=True,
        text=True,
        cwd=cwd,  # so that this repository's own ``drip`` package is not importable
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"published client failed:\n{result.stdout}\n{result.stderr}"
    checks: list[str] = json.loads(result.stdout.strip().splitlines()[-1])["checks"]
    return checks


def test_published_client_against_the_local_server(
    published_python: Path, account: Any, tmp_path: Path
) -> None:
    checks = _run(published_python, SCRIPT, account.base_url, account.secret_key, tmp_path)
    for name in (
        "ping",
        "409 existingCustomerId",
        "get_or_create_customer",
        "track_usage",
        "record_run",
        "emit_events_batch",
        "end_run",
        "get_run",
        "get_run_timeline",
        "charge",
        "401 bad key",
        "core async timeline",
    ):
        assert name in checks


def test_published_client_with_a_public_key(
    published_python: Path, account: Any, tmp_path: Path
) -> None:
    """The seed README's public-key flows keep working; reads are refused with 403."""
    checks = _run(published_python, PUBLIC_SCRIPT, account.base_url, account.public_key, tmp_path)
    for name in (
        "create_customer",
        "track_usage",
        "track_usage batch",
        "charge",
        "end_run (own run)",
        "record_run",
        "run() new workflow",
        "run() known workflow",
        "run() failing body raises the caller's exception",
        "list_customers refused",
        "get_run_timeline refused",
    ):
        assert name in checks
    # the runs run() started with the public key on new workflows, as the secret key sees them
    headers = {"Authorization": f"Bearer {account.secret_key}"}
    listed = httpx.get(f"{account.base_url}/v1/runs", headers=headers, params={"limit": 100})
    ended = {r["workflowName"]: r["status"] for r in listed.json()["data"]}
    assert (ended["Pk New Workflow"], ended["Pk Failing"]) == ("COMPLETED", "FAILED"), ended
