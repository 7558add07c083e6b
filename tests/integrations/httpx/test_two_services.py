"""Two real services over loopback: A (in this process) calls B (its own process, its own drip
client) with the httpx integration; B continues A's run only when it trusts baggage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx
from drip.integrations import httpx as drip_httpx
from drip.integrations.fastapi import DripMiddleware
from fastapi import FastAPI
from fastapi.testclient import TestClient

import drip
from drip import Drip, RunStatus
from drip.context import current_run

SERVICE_B = textwrap.dedent(
    """
    import socket, sys
    import uvicorn
    from fastapi import FastAPI
    import drip
    from drip.context import current_run
    from drip.integrations.fastapi import DripMiddleware

    drip.configure(flush_interval=0.05)
    app = FastAPI()

    @drip.metered("b.work")
    def work(n):
        return n

    @app.get("/work/{n}")
    def handler(n: int):
        return {"n": work(n), "run": current_run().id}

    app.add_middleware(
        DripMiddleware,
        customer=lambda request: request.headers.get("x-customer"),
        trust_baggage=sys.argv[1] == "trust",
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until uvicorn has started, not refused
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    """
)


class ServiceB:
    """Service B in its own process: a FastAPI app served by uvicorn on a loopback port."""

    def __init__(self, account: Any, tmp_path: Path) -> None:
        self._account = account
        self._script = tmp_path / "service_b.py"
        self._script.write_text(SERVICE_B)
        self._proc: subprocess.Popen[str] | None = None

    def start(self, mode: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
        env.update(DRIP_API_KEY=self._account.secret_key, DRIP_BASE_URL=self._account.base_url)
        self._proc = subprocess.Popen(
            [sys.executable, str(self._script), mode], stdout=subprocess.PIPE, text=True, env=env
        )
        assert self._proc.stdout is not None
        return f"http://127.0.0.1:{self._proc.stdout.readline().strip()}"

    def stop(self) -> None:
        """SIGTERM: uvicorn stops and B's drip client flushes what it recorded, at exit."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:  # uvicorn shuts down, then re-raises the signal to exit as killed by it
                assert proc.wait(30) in (0, -signal.SIGTERM)
            finally:
                assert proc.stdout is not None
                proc.stdout.close()


@pytest.fixture
def service_b(account: Any, tmp_path: Path) -> Iterator[ServiceB]:
    service = ServiceB(account, tmp_path)
    try:
        yield service
    finally:
        service.stop()


def service_a(b_url: str, customer: str) -> FastAPI:
    app = FastAPI()
    client = httpx.Client(base_url=b_url)
    drip_httpx.instrument(client)

    @drip.metered("a.call_b")
    def call_b(n: int) -> dict[str, Any]:
        response = client.get(f"/work/{n}", headers={"x-customer": customer})
        response.raise_for_status()
        return dict(response.json())

    @app.get("/do/{n}")
    def do(n: int) -> dict[str, Any]:
        return {"a_run": current_run().id, "b": call_b(n)}  # type: ignore[union-attr]

    app.add_middleware(DripMiddleware, customer=lambda request: customer)
    return app


def run_a(b_url: str, customer: str) -> dict[str, Any]:
    with TestClient(service_a(b_url, customer)) as client:
        return dict(client.get("/do/5").json())


def test_b_continues_as_run_when_it_trusts_baggage(
    live: Drip, customers: list[str], service_b: ServiceB
) -> None:
    customer = customers[0]
    answer = run_a(service_b.start("trust"), customer)
    assert answer["b"]["run"] == answer["a_run"]  # B recorded into A's run
    service_b.stop()
    assert live.flush(30).ok
    runs = live.list_runs(customer_id=customer).data
    assert [r.id for r in runs] == [answer["a_run"]]
    timeline = live.get_run_timeline(answer["a_run"])
    assert timeline.status is RunStatus.COMPLETED
    by_meter: dict[str, list[Any]] = {}
    for event in timeline.events:
        by_meter.setdefault(event.meter or "", []).append(event)
    assert sorted(by_meter) == ["a.call_b", "api_calls", "b.work"]
    [call] = by_meter["a.call_b"]
    [work] = by_meter["b.work"]
    assert work.parent_event_id == call.id and work.quantity == 1
    requests = by_meter["api_calls"]
    assert len(requests) == 2  # A's request, and B's inside it
    assert sorted(str(e.parent_event_id) for e in requests) == sorted([call.id, "None"])


def test_b_opens_its_own_run_when_it_does_not_trust_baggage(
    live: Drip, customers: list[str], service_b: ServiceB
) -> None:
    customer = customers[1]
    answer = run_a(service_b.start("distrust"), customer)
    assert answer["b"]["run"] != answer["a_run"]
    service_b.stop()
    assert live.flush(30).ok
    runs = {r.id: r for r in live.list_runs(customer_id=customer).data}
    assert set(runs) == {answer["a_run"], answer["b"]["run"]}
    assert runs[answer["b"]["run"]].parent_run_id is None
    a_meters = sorted(e.meter or "" for e in live.get_run_timeline(answer["a_run"]).events)
    b_meters = sorted(e.meter or "" for e in live.get_run_timeline(answer["b"]["run"]).events)
    assert a_meters == ["a.call_b", "api_calls"]
    assert b_meters == ["api_calls", "b.work"]
