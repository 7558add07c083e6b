"""The delivery fault suite: the real server on loopback, real processes, and a TCP proxy in
front of the server that can be taken down and brought back (connections refused while down).

Counts are always read from the server (``GET /v1/usage/summary``, ``GET /v1/runs/{id}``).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drip import Drip


class FaultProxy:
    """Forwards loopback TCP connections to ``target``; ``down()`` closes the listening socket
    and every open connection (clients see connection refused), ``up()`` listens again on the
    same port. ``delay`` holds each chunk from the server for that many seconds."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.delay = 0.0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(64)
        except OSError:
            sock.close()  # not left for the garbage collector (an unraisable ResourceWarning)
            raise
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave the
            # socket listening until that accept returned
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    # down() ran while this connection was being accepted: it must not
                    # outlive the outage it belongs to
                    client.close()
                    server.close()
                    continue
                self._conns += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        import time

        socks = [client, server]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is server and self.delay:
                        time.sleep(self.delay)
                    (server if sock is client else client).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.close()


@pytest.fixture
def proxy(live_server: Any) -> Iterator[FaultProxy]:
    host, port = live_server.url.rsplit("//", 1)[1].rsplit(":", 1)
    p = FaultProxy((host, int(port)))
    yield p
    p.down()


@pytest.fixture
def client(account: Any) -> Iterator[Drip]:
    with Drip(api_key=account.secret_key, base_url=account.base_url) as c:
        yield c


@pytest.fixture
def customer(client: Drip) -> str:
    return client.create_customer(external_customer_id="user_delivery").id


def stored(client: Drip, customer: str, meter: str) -> tuple[int, int]:
    """(run events, usage records) of ``meter`` for ``customer``, as the server holds them."""
    summary = client.get_usage_summary(customer_id=customer, meter=meter)
    return (
        sum(m.run_events for m in summary.meters if m.meter == meter),
        sum(m.usage_records for m in summary.meters if m.meter == meter),
    )


PRELUDE = """
import os, sys, signal, time, json
import drip
from drip import Drip
from drip import instrument as dm

CUSTOMER = os.environ["CUSTOMER"]

@dm.metered("delivery.calls")
def work(i=0):
    return i
"""


def script(tmp_path: Path, body: str, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(PRELUDE + textwrap.dedent(body))
    return path


def spawn(path: Path, account: Any, customer: str, url: str | None = None, **env: str) -> Any:
    """Start ``path`` in a new interpreter with the key, URL and customer in its environment."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    full.update(KEY=account.secret_key, URL=url or account.base_url, CUSTOMER=customer, **env)
    return subprocess.Popen(
        [sys.executable, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def wait_line(proc: Any, expected: str, timeout: float = 120) -> str:
    """Read the child's stdout until a line starting with ``expected``."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(expected):
            return str(line.strip())
    proc.kill()
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"no {expected!r} line; stderr: {err[-3000:]}")


@pytest.fixture
def kit() -> Iterator[Any]:
    """The helpers above, for test modules (tests are not a package). A child still running
    when the test ends (a hang the test timed out on) is killed and its pipes closed here, so
    that it neither outlives the run nor fails the next test with unclosed-file warnings."""
    import types

    children: list[Any] = []

    def spawn_tracked(*args: Any, **kwargs: Any) -> Any:
        proc = spawn(*args, **kwargs)
        children.append(proc)
        return proc

    yield types.SimpleNamespace(
        stored=stored, script=script, spawn=spawn_tracked, wait_line=wait_line
    )
    for proc in children:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(Exception):
                proc.communicate(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
