"""A deploy stops uvicorn with SIGTERM: nothing the requests recorded is lost.

uvicorn handles SIGTERM itself: it lets the requests in flight finish, runs the lifespan's
shutdown, then restores the handler it found and raises SIGTERM again, so the process dies
without ``atexit``. The middleware flushes at the end of the lifespan. Real processes: ``python
-m uvicorn`` (one worker, and ``--workers 2``), configured from the environment only, with a
flush interval no test waits for; counts read from the real local server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx

from drip import Drip

APP = textwrap.dedent(
    """
    import time
    from fastapi import FastAPI
    import drip
    from drip.integrations.fastapi import DripMiddleware

    app = FastAPI()

    @drip.metered("stop.work")
    def work(n):
        return n

    @app.get("/work/{n}")
    def handler(n: int):  # sync: the first record comes from uvicorn's thread pool
        return {"n": work(n)}

    @app.get("/slow")
    def slow():
        print("slow started", flush=True)
        time.sleep(1.5)  # SIGTERM arrives meanwhile: uvicorn lets it finish
        return {"n": work(-1)}

    app.add_middleware(
        DripMiddleware,
        customer=lambda request: (
            {"external_customer_id": request.headers["x-customer"]}
            if "x-customer" in request.headers else None
        ),
    )
    """
)

CUSTOMERS = [f"stop-{i}" for i in range(5)]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(tmp_path: Path, account: Any, *options: str) -> tuple[subprocess.Popen[str], str]:
    (tmp_path / "stopapp.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    env.update(
        DRIP_API_KEY=account.secret_key,
        DRIP_BASE_URL=account.base_url,
        DRIP_FLUSH_INTERVAL="600",  # nothing is sent before the stop unless the stop sends it
    )
    port = _port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "stopapp:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *options,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/docs", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                break
            threading.Event().wait(0.05)
    proc.kill()
    raise AssertionError("uvicorn did not start")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down, then raises the signal again: killed by it (0 for the supervisor)
    assert proc.wait(60) in (0, -signal.SIGTERM)
    assert proc.stdout is not None
    proc.stdout.close()


def _counts(client: Drip) -> dict[str, tuple[int, int]]:
    counts = {}
    for external in CUSTOMERS:
        customer = client.create_customer(external_customer_id=external).id  # the existing one
        summary = client.get_usage_summary(customer_id=customer)
        by_meter = {m.meter: m.run_events for m in summary.meters}
        counts[external] = (by_meter.get("api_calls", 0), by_meter.get("stop.work", 0))
    return counts


def test_sigterm_mid_request_loses_nothing(tmp_path: Path, account: Any) -> None:
    proc, url = _serve(tmp_path, account)
    try:
        with httpx.Client(base_url=url) as http:
            for i in range(100):
                answer = http.get(f"/work/{i}", headers={"x-customer": CUSTOMERS[i % 5]})
                assert answer.status_code == 200
            slow: list[int] = []
            in_flight = threading.Thread(
                target=lambda: slow.append(
                    http.get("/slow", headers={"x-customer": CUSTOMERS[0]}, timeout=30).status_code
                )
            )
            in_flight.start()
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "slow started"
            _stop(proc)
            in_flight.join(30)
        assert slow == [200]  # the request in flight was served, and then metered
    finally:
        if proc.poll() is None:
            proc.kill()
    with Drip(api_key=account.secret_key, base_url=account.base_url) as client:
        counts = _counts(client)
    assert counts == {"stop-0": (21, 21), **{c: (20, 20) for c in CUSTOMERS[1:]}}


def test_sigterm_to_a_multiprocess_uvicorn_loses_nothing(tmp_path: Path, account: Any) -> None:
    proc, url = _serve(tmp_path, account, "--workers", "2")
    try:
        with httpx.Client(base_url=url) as http:
            for i in range(200):
                answer = http.get(f"/work/{i}", headers={"x-customer": CUSTOMERS[i % 5]})
                assert answer.status_code == 200
        _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Drip(api_key=account.secret_key, base_url=account.base_url) as client:
        assert _counts(client) == {c: (40, 40) for c in CUSTOMERS}
