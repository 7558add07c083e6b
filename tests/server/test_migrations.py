"""Migrations: a fresh database at head, a 0.2 database upgraded in place, ``drip db``, and
worker processes starting together on one fresh database (SQLite here; PostgreSQL when the
suite runs with ``DRIP_TEST_DATABASE_URL``, as ``.ci/run`` does)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from drip.server import start_server
from drip.server.storage import migrations
from drip.server.storage.database import Database

FIXTURES = Path(__file__).with_name("fixtures")


def _load_02(url: str) -> None:
    """Fill an empty database with what drip-sdk 0.2 made (tables by ``create_all``, data)."""
    if url.startswith("sqlite"):
        script = (FIXTURES / "drip-0.2.sqlite.sql").read_text()
        with closing(sqlite3.connect(str(make_url(url).database))) as conn, conn:
            conn.executescript(script)
        return
    script = (FIXTURES / "drip-0.2.postgresql.sql").read_text()
    db = Database(url)
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(script)
    finally:
        db.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    found = Database(database_url)
    yield found
    found.dispose()


def test_a_fresh_database_is_created_at_head(db: Database) -> None:
    assert migrations.current(db) is None
    applied = db.upgrade()
    assert applied[0] == migrations.FIRST and applied[-1] == migrations.head()
    assert migrations.current(db) == migrations.head()
    assert db.upgrade() == []
    tables = set(inspect(db.engine).get_table_names())
    assert {"accounts", "api_keys", "customers", "runs", "events", "usage_records"} <= tables


def test_a_02_database_upgrades_in_place_and_keeps_its_data(database_url: str) -> None:
    _load_02(database_url)
    db = Database(database_url)
    try:
        assert migrations.current(db) is None  # 0.2 had no alembic_version
        applied = db.upgrade()
        assert migrations.FIRST not in applied  # stamped: its tables are already there
        assert applied[-1] == migrations.head()
        assert migrations.current(db) == migrations.head()
    finally:
        db.dispose()
    with start_server(database_url, prices={"api_calls": "0.001"}) as server:
        key = server.create_key("default")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers) as api:
            customers = api.get("/customers").json()["data"]
            assert [c["externalCustomerId"] for c in customers] == ["user_123"]
            cid = customers[0]["id"]
            timeline = api.get("/runs/run_old1/timeline").json()
            assert timeline["status"] == "COMPLETED"
            assert [e["id"] for e in timeline["events"]][-1] == "evt_old2"
            assert timeline["summary"]["totalEvents"] == 2
            meters = {m["meter"]: m for m in api.get("/usage/summary").json()["meters"]}
            assert meters["api_calls"]["quantity"] == 5  # 3 tracked + 2 charged
            # the old idempotency keys still de-duplicate; a new record goes in
            again = {"customerId": cid, "usageType": "api_calls", "quantity": 3}
            repeat = api.post("/usage/internal", json={**again, "idempotencyKey": "k1"})
            assert repeat.json()["isDuplicate"] is True
            fresh = api.post("/usage/internal", json={**again, "idempotencyKey": "k2"})
            assert fresh.json()["isDuplicate"] is False


def _drip(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "drip.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_drip_db_current_and_upgrade(database_url: str) -> None:
    head = migrations.head()
    assert _drip("db", "current", "--database-url", database_url).strip() == (
        f"current: none (head: {head})"
    )
    out = _drip("db", "upgrade", "--database-url", database_url)
    assert f"upgraded: {migrations.FIRST}" in out
    assert f"current: {head}" in out
    assert "already at head" in _drip("db", "upgrade", "--database-url", database_url)


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    return {**env, "DRIP_DATABASE_URL": database_url}


def _wait_for(process: subprocess.Popen[str], pattern: str, timeout: float = 90) -> str:
    """Read the process's output until a line matches; the output so far."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"never saw {pattern!r}; output:\n{seen}")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    return out


def _no_errors(log: str) -> None:
    assert "Traceback" not in log and "ERROR" not in log, log


def test_four_processes_starting_together_on_a_fresh_database(database_url: str) -> None:
    """Four ``uvicorn --factory drip.server.app:create_app`` processes, started at once on
    one empty database: each upgrades under the lock; all come up, no error is logged."""
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", "drip.server.app:create_app"),
        *("--host", "127.0.0.1", "--port", "0"),
    ]
    processes = [
        subprocess.Popen(
            command,
            env=_env(database_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    logs = [""] * len(processes)
    try:
        for i, process in enumerate(processes):
            logs[i] = _wait_for(process, r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
            port = re.findall(r"127\.0\.0\.1:(\d+)", logs[i])[-1]
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        logs = [log + _stop(p) for log, p in zip(logs, processes, strict=True)]
    for log in logs:
        _no_errors(log)
    db = Database(database_url)
    try:
        assert migrations.current(db) == migrations.head()
    finally:
        db.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(database_url: str, port: int, *options: str) -> subprocess.Popen[str]:
    """``drip serve`` on this database and port, its output merged into ``stdout``."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "drip.cli", "serve", "--database-url", database_url),
            *("--port", str(port), *options),
        ],
        env=_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_drip_serve_with_four_workers(database_url: str) -> None:
    """``drip serve --workers 4``: every worker answers; a request reaches the database."""
    port = _free_port()
    process = _serve(database_url, port, "--workers", "4")
    log = ""
    try:
        log = _wait_for(process, r"secret key: ")
        key = log.rsplit("secret key: ", 1)[1].split()[0]
        for _ in range(4):
            log += _wait_for(process, r"Application startup complete")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers=headers) as api:
            created = api.post("/customers", json={"externalCustomerId": "w"})
            assert created.status_code == 201, created.text
            # every connection is a new one: uvicorn's workers share the socket
            for n in range(8):
                reply = httpx.get(f"http://127.0.0.1:{port}/v1/customers", headers=headers)
                assert reply.json()["count"] == 1, (n, reply.text)
    finally:
        log += _stop(process)
    _no_errors(log)
    assert log.count("Started server process") == 4


def test_drip_serve_stopped_by_sigterm_leaves_no_wal_files(tmp_path: Path) -> None:
    """A graceful stop closes the database: SQLite folds its WAL into the file and removes the
    ``-wal`` and ``-shm`` files (what a clean copy or backup of the file expects)."""
    path = tmp_path / "serve.db"
    url = f"sqlite:///{path}"
    port = _free_port()
    process = _serve(url, port)
    log = ""
    try:
        log = _wait_for(process, r"secret key: ")
        key = log.rsplit("secret key: ", 1)[1].split()[0]
        log += _wait_for(process, r"Application startup complete")
        headers = {"Authorization": f"Bearer {key}"}
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/customers",
            headers=headers,
            json={"externalCustomerId": "x"},
        )
        assert reply.status_code == 201, reply.text
        assert path.with_name("serve.db-wal").exists()  # written, not checkpointed yet
    finally:
        log += _stop(process)
    _no_errors(log)
    assert process.returncode in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal
    assert (
        not path.with_name("serve.db-wal").exists() and not path.with_name("serve.db-shm").exists()
    )


def test_a_database_from_a_newer_drip_is_refused_in_one_line(database_url: str) -> None:
    """A schema at a revision these migrations do not know (a newer drip-sdk upgraded it) is
    refused by name, exit 2, the database untouched; not Alembic's traceback."""
    db = Database(database_url)
    try:
        db.upgrade()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0999_future'")
        with pytest.raises(migrations.SchemaTooNew, match="0999_future"):
            db.upgrade()
    finally:
        db.dispose()
    for command in (("db", "upgrade"), ("serve", "--port", "1")):
        result = subprocess.run(
            [sys.executable, "-m", "drip.cli", *command, "--database-url", database_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert "0999_future" in message and migrations.head() in message, message
        assert "newer drip-sdk" in message, message
    assert "current: 0999_future" in _drip("db", "current", "--database-url", database_url)
