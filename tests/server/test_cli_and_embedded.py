"""``drip`` command line (keys, stubs) and the embedded server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import drip
from drip.cli import main
from drip.server import start_server


def test_keys_create_prints_only_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "nested" / "k.db"
    assert main(["keys", "create", "--db", str(db)]) == 0
    secret = capsys.readouterr().out
    assert secret.startswith("sk_local_") and secret.count("\n") == 1
    assert main(["keys", "create", "--db", str(db), "--public", "--account", "acme"]) == 0
    public = capsys.readouterr().out.strip()
    assert public.startswith("pk_local_")
    # the key works against a server over the same file, and is stored hashed only
    with start_server(f"sqlite:///{db}") as server:
        response = httpx.get(
            f"{server.url}/v1/customers", headers={"Authorization": f"Bearer {secret.strip()}"}
        )
        assert response.status_code == 200
    assert secret.strip().encode() not in db.read_bytes()


@pytest.mark.parametrize("command", ["runs", "timeline", "usage"])
def test_stubs_exit_2(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command]) == 2
    assert "not implemented yet" in capsys.readouterr().err


def test_bad_price_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve", "--db", str(tmp_path / "x.db"), "--price", "tokens"]) == 2
    assert "METER=" in capsys.readouterr().err


def test_help_does_not_import_the_server() -> None:
    code = "import sys; from drip.cli import _parser; _parser(); print('fastapi' in sys.modules or 'sqlalchemy' in sys.modules)"
    root = Path(drip.__file__).resolve().parents[1]  # works for a source tree and an install
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"


def test_embedded_server_lifecycle(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'e.db'}", prices={"tokens": "0.5"})
    try:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        key = server.create_key("team")
        public = server.create_key("team", public=True)
        assert key.startswith("sk_") and public.startswith("pk_")
        headers = {"Authorization": f"Bearer {key}"}
        cid = httpx.post(
            f"{server.url}/v1/customers", json={"externalCustomerId": "a"}, headers=headers
        ).json()["id"]
        charge = httpx.post(
            f"{server.url}/v1/usage",
            json={"customerId": cid, "usageType": "tokens", "quantity": 3},
            headers=headers,
        ).json()
        assert charge["charge"]["amountUsdc"] == "1.500000"
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)
