"""Fixtures for the integration tests: the default drip client on a fresh account.

``recorder`` (LLM integrations) configures drip's default client (strict, quick flushes) against
the live local server and gives a ``Recorder`` with a customer id and ``events(run_id)``, which
flushes and reads the run's timeline back from the server. ``live`` (web integrations) is the
default client, not strict: a handler's metered call outside a run is logged, as in production.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import drip
from drip import Drip
from drip._default import configure, reset_default_client


@dataclass
class Recorder:
    client: Drip
    customer: str

    def events(self, run_id: str) -> list[Any]:
        """Flush, then the run's events as the server holds them, oldest first."""
        report = self.client.flush(30)
        assert report.ok, report
        return list(self.client.get_run_timeline(run_id).events)

    def run(self, run_id: str) -> Any:
        self.client.flush(30)
        return self.client.get_run(run_id)


@pytest.fixture
def recorder(account: Any) -> Iterator[Recorder]:
    client = configure(
        api_key=account.secret_key, base_url=account.base_url, strict=True, flush_interval=0.05
    )
    try:
        customer = client.create_customer(external_customer_id="llm_user").id
        yield Recorder(client, customer)
    finally:
        reset_default_client()


@pytest.fixture
def live(account: Any) -> Iterator[Drip]:
    """The default client (what ``drip.run`` records into), on a fresh account (not strict:
    a handler's metered call outside a run is logged, as in production)."""
    client = drip.configure(
        api_key=account.secret_key, base_url=account.base_url, flush_interval=0.05
    )
    try:
        yield client
    finally:
        reset_default_client()


@pytest.fixture
def customers(live: Drip) -> list[str]:
    """Five customers on the server."""
    return [live.create_customer(external_customer_id=f"web_{i}").id for i in range(5)]


@pytest.fixture
def slug(live: Drip) -> Callable[[str], str]:
    """The workflow slug (what the SDK named it) of a workflow id; the server titles the name."""

    def of(workflow_id: str) -> str:
        return {w.id: w.slug for w in live.list_workflows().data}[workflow_id]

    return of


class Deploy:
    """An application served by an ASGI server (``python -m uvicorn``, ``hypercorn`` or
    ``daphne``) in its own process, configured from the environment only (with a flush interval
    no test waits for: nothing is sent before the stop unless the stop sends it), then stopped
    as a deploy stops it: SIGTERM. Counts are read from the real local server."""

    #: what each server answers a request in flight at SIGTERM: uvicorn and hypercorn let it
    #: finish and answer it; daphne mostly closes its connection at once (0), sometimes
    #: answers first, while the handler runs to its end in the thread pool either way, and
    #: what it recorded is kept
    IN_FLIGHT = {"uvicorn": {200}, "hypercorn": {200}, "daphne": {0, 200}}

    CUSTOMERS = [f"stop-{i}" for i in range(5)]

    def __init__(self, account: Any, tmp_path: Path) -> None:
        self.account = account
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen[str] | None = None

    def serve(
        self, module: str, source: str, target: str, *options: str, server: str = "uvicorn"
    ) -> str:
        """Write ``source`` as ``module.py``, serve ``module:target`` with ``server``
        (``uvicorn``, ``hypercorn`` or ``daphne``); the base URL."""
        (self.tmp_path / f"{module}.py").write_text(source)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
        env.update(
            DRIP_API_KEY=self.account.secret_key,
            DRIP_BASE_URL=self.account.base_url,
            DRIP_FLUSH_INTERVAL="600",
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        app = f"{module}:{target}"
        command = {
            "uvicorn": ["uvicorn", app, "--port", str(port), "--log-level", "warning"],
            "hypercorn": ["hypercorn", app, "--bind", f"127.0.0.1:{port}"],
            "daphne": ["daphne", "-v", "0", "--bind", "127.0.0.1", "--port", str(port), app],
        }[server]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *command, *options],
            cwd=self.tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return url
            except OSError:
                if self.proc.poll() is not None:
                    break
                threading.Event().wait(0.05)
        self.proc.kill()
        raise AssertionError(f"{server} did not start")

    def line(self) -> str:
        """The next line the application printed."""
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def stop_mid_request(self, url: str, requests: int) -> int:
        """``requests`` requests to ``/work/{i}`` from the customers in turn, then SIGTERM while
        the first customer's ``/slow`` request is in flight (the app prints ``slow started``);
        the status that request got (0: the server closed its connection)."""
        with httpx.Client(base_url=url) as http:
            for i in range(requests):
                customer = self.CUSTOMERS[i % len(self.CUSTOMERS)]
                assert http.get(f"/work/{i}", headers={"x-customer": customer}).status_code == 200
            slow: list[int] = []
            headers = {"x-customer": self.CUSTOMERS[0]}

            def request() -> None:
                try:
                    slow.append(http.get("/slow", headers=headers, timeout=30).status_code)
                except httpx.TransportError:  # the server dropped the connection
                    slow.append(0)

            in_flight = threading.Thread(target=request)
            in_flight.start()
            assert self.line() == "slow started"
            self.stop()
            in_flight.join(30)
        return slow[0] if slow else 0

    def stop(self) -> None:
        """SIGTERM: the server shuts down gracefully, then ends (uvicorn by raising SIGTERM
        again; 0 from a ``--workers`` parent, hypercorn and daphne)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(60) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stdout is not None
            proc.stdout.close()

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per customer: the ``api_calls`` and ``stop.work`` events the server holds."""
        counts = {}
        account = self.account
        with Drip(api_key=account.secret_key, base_url=account.base_url) as client:
            for external in self.CUSTOMERS:
                customer = client.create_customer(external_customer_id=external).id  # existing
                meters = client.get_usage_summary(customer_id=customer).meters
                by_meter = {m.meter: m.run_events for m in meters}
                counts[external] = (by_meter.get("api_calls", 0), by_meter.get("stop.work", 0))
        return counts


@pytest.fixture
def deploy(account: Any, tmp_path: Path) -> Iterator[Deploy]:
    running = Deploy(account, tmp_path)
    try:
        yield running
    finally:
        if running.proc is not None and running.proc.poll() is None:
            running.proc.kill()
