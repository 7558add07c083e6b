"""An error the server does not expect (a bug in a route, a storage call that fails in a way not
mapped to a status) is one JSON 500 in the API's error shape, one traceback in the log, and the
client's keep-alive connection stays usable: served by uvicorn over loopback, as ``drip serve``
serves it, with a storage call patched to raise."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drip.server import start_server
from drip.server.storage import customers as storage_customers


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    running = start_server(f"sqlite:///{tmp_path / 'drip.db'}")
    yield running
    running.stop()


def _exchange(
    sock: socket.socket, stream: Any, path: str, key: str
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on an open connection; the status, headers and body of its answer."""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    status_line = stream.readline()
    assert status_line, "the server closed the connection"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", "0")))
    return status, headers, body


def test_an_unexpected_error_is_one_json_500_and_the_connection_lives_on(
    server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = server.create_key("crash")

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug nobody mapped")

    monkeypatch.setattr(storage_customers, "get_customer", broken)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    caplog.set_level(logging.INFO)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        stream = sock.makefile("rb")
        status, headers, body = _exchange(sock, stream, "/v1/customers/cus_x", key)
        assert status == 500
        assert headers["content-type"] == "application/json"
        assert headers.get("connection", "").lower() != "close"
        answer = json.loads(body)
        assert answer == {
            "error": "internal_error",
            "message": "The server failed; see its log for details",
            "code": "INTERNAL_ERROR",
        }
        # the same connection answers the next request
        status, _, body = _exchange(sock, stream, "/v1/customers", key)
        assert status == 200, body
        assert json.loads(body)["data"] == []
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert "GET /v1/customers/cus_x" in tracebacks[0].getMessage()
    assert "a bug nobody mapped" in str(tracebacks[0].exc_info[1])  # type: ignore[index]


def test_an_unmapped_storage_error_is_one_json_500_too(
    server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver error that is neither a full disk nor an unreachable database (the storage
    handler hands it on) is answered the same way."""
    import sqlite3

    import sqlalchemy.exc

    key = server.create_key("crash")

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        try:
            raise sqlite3.IntegrityError("some constraint nobody expected")
        except sqlite3.Error as exc:  # wrapped as SQLAlchemy wraps a driver's error
            raise sqlalchemy.exc.IntegrityError("INSERT …", None, exc) from exc

    monkeypatch.setattr(storage_customers, "get_customer", broken)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        stream = sock.makefile("rb")
        status, _, body = _exchange(sock, stream, "/v1/customers/cus_x", key)
        assert status == 500
        assert json.loads(body)["code"] == "INTERNAL_ERROR"
        status, _, _ = _exchange(sock, stream, "/v1/customers", key)
        assert status == 200
    assert len([r for r in caplog.records if r.exc_info is not None]) == 1
    # one traceback in the log's text too: the driver's error is named on the line
    assert caplog.text.count("Traceback (most recent call last)") == 1
    assert "caused by IntegrityError: some constraint nobody expected" in caplog.text


def test_a_client_leaving_mid_body_is_one_line_not_a_traceback(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that goes away while sending its body (its timeout, a killed process) is an
    ordinary event: a warning line, no traceback, nothing stored, the server serves on."""
    import time

    import httpx

    key = server.create_key("leaver")
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/ingest HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b'{"items": [{"type": "usage", "id": "u1", "externalCustomerId": "a", '
            + b'"usageType": "x", "quantity": 1}'
        )
        time.sleep(0.3)
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        "went away" in r.getMessage() for r in caplog.records
    ):
        time.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if "went away" in r.getMessage()] == [
        "the client went away while sending POST /v1/ingest: nothing done"
    ]
    assert [r for r in caplog.records if r.exc_info is not None] == []
    summary = httpx.get(f"{server.url}/v1/usage/summary", headers=headers, timeout=10)
    assert summary.status_code == 200 and summary.json()["meters"] == []
