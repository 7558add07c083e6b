"""The database going away while the server runs: each request answers 503
``DATABASE_UNAVAILABLE`` with ``Retry-After`` (the SDK retries it), logged in one line, not a
500 'see its log' with a traceback per request; the server serves again once the database is
back, without a restart (the pool checks connections before use)."""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from drip.server import create_app


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_postgresql_server_that_cannot_be_reached_is_a_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://drip@127.0.0.1:{_closed_port()}/drip"
    app = create_app(url, create_tables=False)
    headers = {"Authorization": "Bearer sk_local_" + "0" * 48}
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        for method, path in (("GET", "/v1/customers"), ("POST", "/v1/ingest")):
            response = client.request(method, path, headers=headers, json={"items": []})
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["code"] == "DATABASE_UNAVAILABLE", body
            assert "database" in body["message"] and "Traceback" not in response.text
            assert response.headers["retry-after"] == "1"
    lines = [r for r in caplog.records if r.name == "drip.server"]
    assert lines and all(r.exc_info is None for r in lines), lines
    assert "cannot reach the database" in lines[0].getMessage()


def test_a_sqlite_file_that_cannot_be_opened_is_a_503(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    app = create_app(f"sqlite:///{folder / 'drip.db'}")
    app.state.drip.db.dispose()  # no pooled connection to the old file
    shutil.rmtree(folder)  # the folder is gone: SQLite cannot open (or make) the file
    headers = {"Authorization": "Bearer sk_local_" + "0" * 48}
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/customers", headers=headers)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "DATABASE_UNAVAILABLE"


def test_a_read_only_sqlite_database_is_a_clear_503(tmp_path: Path) -> None:
    """Writes to a database that became read-only (a file whose mode or mount changed under
    the server) answer 503 DATABASE_READ_ONLY saying so; reads still answer."""
    from sqlalchemy import event

    from drip.server.keys import KeyStore

    app = create_app(f"sqlite:///{tmp_path / 'drip.db'}")
    db = app.state.drip.db
    key = KeyStore(db).create_key()
    db.dispose()

    @event.listens_for(db.engine, "connect")
    def _read_only(dbapi_conn: object, _record: object) -> None:
        dbapi_conn.execute("PRAGMA query_only=ON")  # type: ignore[attr-defined]

    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/customers", headers=headers).status_code == 200
        response = client.post("/v1/customers", headers=headers, json={"externalCustomerId": "ro"})
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "DATABASE_READ_ONLY"
    assert "read-only" in response.json()["message"]
