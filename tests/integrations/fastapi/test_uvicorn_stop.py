"""A deploy stops uvicorn (or hypercorn, or daphne) with SIGTERM: nothing the requests
recorded is lost.

uvicorn handles SIGTERM itself: it lets the requests in flight finish, runs the lifespan's
shutdown, then restores the handler it found and raises SIGTERM again, so the process dies
without ``atexit``. The middleware flushes at the end of the lifespan. Real processes: ``python
-m uvicorn`` (one worker, and ``--workers 2``), hypercorn and daphne (which end by ``atexit``);
see ``Deploy`` in the conftest.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx

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


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "daphne"])
def test_sigterm_mid_request_loses_nothing(deploy: Any, server: str) -> None:
    url = deploy.serve("stopapp", APP, "app", server=server)
    assert deploy.stop_mid_request(url, 100) in deploy.IN_FLIGHT[server]
    customers = deploy.CUSTOMERS
    assert deploy.counts() == {"stop-0": (21, 21), **{c: (20, 20) for c in customers[1:]}}


def test_sigterm_to_a_multiprocess_uvicorn_loses_nothing(deploy: Any) -> None:
    url = deploy.serve("stopapp", APP, "app", "--workers", "2")
    customers = deploy.CUSTOMERS
    with httpx.Client(base_url=url) as http:
        for i in range(200):
            answer = http.get(f"/work/{i}", headers={"x-customer": customers[i % 5]})
            assert answer.status_code == 200
    deploy.stop()
    assert deploy.counts() == {c: (40, 40) for c in customers}
