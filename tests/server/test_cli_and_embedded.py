"""``drip`` command line (keys, read commands) and the embedded server."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_server_commands_read_drip_database_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no --db / --database-url, ``DRIP_DATABASE_URL`` (the server's workers' setting)
    names the database of ``serve``, ``keys`` and ``db``; ``drip serve`` took
    ``.drip/drip.db`` instead, beside a PostgreSQL URL exported for the workers."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "from-env.db"
    monkeypatch.setenv("DRIP_DATABASE_URL", f"sqlite:///{db}")
    assert main(["db", "upgrade"]) == 0
    assert main(["keys", "create"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("sk_local_") and db.exists()
    assert not (tmp_path / ".drip").exists()
    with start_server(f"sqlite:///{db}") as server:
        reply = httpx.get(f"{server.url}/v1/customers", headers={"Authorization": f"Bearer {key}"})
        assert reply.status_code == 200
    # an option still wins
    other = tmp_path / "other.db"
    assert main(["db", "upgrade", "--db", str(other)]) == 0 and other.exists()


def test_read_commands(
    account: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIP_API_KEY", account.secret_key)
    monkeypatch.setenv("DRIP_BASE_URL", account.base_url)
    with drip.Drip() as client:
        customer = client.create_customer(external_customer_id="cli-user")
        run = client.start_run(customer_id=customer.id, workflow_id="cli-flow")
        first = client.emit_event(run_id=run.id, event_type="llm.call", quantity=42)
        client.emit_events_batch(
            [{"runId": run.id, "eventType": "tool.call", "parentEventId": first.id}]
        )
        client.end_run(run.id, "FAILED", error_code="ValueError", error_message="boom")
    capsys.readouterr()
    assert main(["runs", "--customer", customer.id]) == 0
    out = capsys.readouterr().out
    assert run.id in out and "FAILED" in out and "Cli Flow" in out
    assert main(["timeline", run.id]) == 0
    out = capsys.readouterr().out
    assert "ValueError: boom" in out and "└─ llm.call  x42" in out
    assert "   └─ tool.call  x1" in out  # the child event, indented under its parent
    assert main(["usage", "--customer", customer.id]) == 0
    out = capsys.readouterr().out
    assert "llm.call" in out and "42" in out
    assert main(["timeline", "run_missing"]) == 1
    assert "404" in capsys.readouterr().err


def test_bad_price_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve", "--db", str(tmp_path / "x.db"), "--price", "tokens"]) == 2
    assert "METER=" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_serve_refuses_an_in_memory_database(capsys: pytest.CaptureFixture[str], url: str) -> None:
    """Each server process would have a database of its own: the keys drip serve made and
    printed were in none of them (every request a 401)."""
    with socket.socket() as taken:  # were it not refused, it would stop there, not serve
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve", "--database-url", url, "--port", port]) == 2
    err = capsys.readouterr().err
    assert "in-memory" in err and "--db" in err, err


def test_serve_starts_with_the_http_parser_and_loop_named(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "drip.cli", "serve", "--db", str(tmp_path / "s.db")]
    command += ["--port", str(port), "--http", "h11", "--loop", "asyncio", "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(30)


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
