"""Running the server inside a process: on a background thread, on a loopback port.

Used by the SDK's ``DRIP_BASE_URL=local`` mode, by the test fixtures and by ``drip serve``'s
callers that want a server without a terminal.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal

import uvicorn

from .app import create_app
from .deps import ServerState
from .keys import DEFAULT_ACCOUNT
from .pricing import Pricing

__all__ = ["RunningServer", "start_server"]

Prices = Mapping[str, float | str | Decimal] | Iterable[str] | Pricing | None


class RunningServer:
    """A server started by :func:`start_server`."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, url: str, state: ServerState
    ):
        self._server = server
        self._thread = thread
        self._state = state
        #: base URL without ``/v1``, e.g. ``http://127.0.0.1:54321``
        self.url = url

    def create_key(self, account: str = DEFAULT_ACCOUNT, public: bool = False) -> str:
        """A new API key for ``account`` (created if new)."""
        return self._state.keys.create_key(account, public=public)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the database."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._state.db.dispose()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r})"


def _pricing(prices: Prices) -> Pricing:
    if isinstance(prices, Pricing):
        return prices
    return Pricing.build(prices)


def start_server(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    prices: Prices = None,
    *,
    startup_timeout: float = 15.0,
) -> RunningServer:
    """Serve the Drip API on a daemon thread; returns once it accepts connections.

    ``port=0`` lets the OS choose a free port; ``RunningServer.url`` tells which.
    """
    app = create_app(database_url, pricing=_pricing(prices))
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on each accepted connection only when
    # the socket says it is TCP (uvicorn's own sockets do; this one did not)
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Also on the listening socket (accepted ones inherit it on Linux): without TCP_NODELAY,
    # Nagle's algorithm and the client's delayed ACK held every answer ~40 ms (45 ms a request
    # against 2.6 ms for ``drip serve``, whose sockets uvicorn opens itself).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    # the stdlib event loop, whose TCP_NODELAY rule is the one relied on above (uvloop, which
    # ``drip serve`` picks up when installed, reports proto=0 for this socket)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"drip-server-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the Drip server did not start on {host}:{bound_port}")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    return RunningServer(server, thread, f"http://{shown}:{bound_port}", app.state.drip)
