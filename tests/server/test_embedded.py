"""The embedded server's sockets: TCP_NODELAY, so an answer is not held by Nagle's algorithm
against the client's delayed ACK (~40 ms a request; the timing is in benchmarks/README.md)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from drip.server import start_server


def test_accepted_connections_have_tcp_nodelay(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        [listening] = [s for srv in server._server.servers for s in srv.sockets]
        assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # asyncio sets TCP_NODELAY on accepted connections only for sockets that say TCP
        assert listening.proto == socket.IPPROTO_TCP
        host, port = listening.getsockname()[:2]
        with socket.create_connection((host, port)) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.recv(64).startswith(b"HTTP/1.1 200")
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        server.stop()
