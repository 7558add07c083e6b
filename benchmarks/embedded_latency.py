"""Embedded server (``DRIP_BASE_URL=local``): milliseconds per request with and without
``TCP_NODELAY`` on its socket, interleaved in one process (3 samples of 30 empty ingests each).

Without it, Nagle's algorithm and the client's delayed ACK hold each answer about 40 ms.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import time
import types
from typing import Any

import httpx

from drip.server import embedded


class _AsBefore(socket.socket):
    """The listening socket as the embedded server made it before the fix: protocol 0 (so
    asyncio does not set TCP_NODELAY on accepted connections) and no TCP_NODELAY of its own."""

    def __init__(self, family: int = -1, kind: int = -1, proto: int = -1, fileno: Any = None):
        super().__init__(family, kind, 0, fileno)

    def setsockopt(self, level: int, opt: int, value: Any, *rest: Any) -> None:
        if level == socket.IPPROTO_TCP and opt == socket.TCP_NODELAY:
            return None
        return super().setsockopt(level, opt, value, *rest)


def sample(nodelay: bool) -> float:
    """ms per request against a fresh embedded server, as it is (True) or was (False)."""
    shim = types.ModuleType("socket")
    shim.__dict__.update(vars(socket))
    shim.socket = _AsBefore  # type: ignore[attr-defined]
    if not nodelay:
        embedded.socket = shim  # type: ignore[attr-defined]
    try:
        server = embedded.start_server(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    finally:
        embedded.socket = socket  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {server.create_key()}", "Content-Type": "application/json"}
    try:
        with httpx.Client() as client:
            for _ in range(3):
                client.post(f"{server.url}/v1/ingest", content=b'{"items":[]}', headers=headers)
            t0 = time.perf_counter()
            for _ in range(30):
                client.post(f"{server.url}/v1/ingest", content=b'{"items":[]}', headers=headers)
            return (time.perf_counter() - t0) / 30 * 1000
    finally:
        server.stop()


def main() -> None:
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):
        for nodelay in (False, True):
            results[nodelay].append(sample(nodelay))
    for nodelay, label in ((False, "without TCP_NODELAY"), (True, "with TCP_NODELAY")):
        values = results[nodelay]
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"{label:20s} ms/request: {shown}  median {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
