"""A request that crosses services stays one run: service A calls service B with httpx, and B,
trusting A's baggage, records into A's run.

Run: DRIP_BASE_URL=local python examples/two_services.py   (needs drip-sdk[server,fastapi])
"""

from __future__ import annotations

import asyncio

import httpx
from drip.integrations import httpx as drip_httpx
from drip.integrations.fastapi import DripMiddleware
from fastapi import FastAPI, Request

import drip
from drip.context import current_run


@drip.metered(meter="rows_scanned", quantity=lambda rows: rows)
def scan(table: str) -> int:
    return 1200


def service_b(trust: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/scan/{table}")
    def handler(table: str) -> dict[str, object]:
        return {"rows": scan(table), "run": current_run().id}  # type: ignore[union-attr]

    def customer(request: Request) -> str | None:
        return request.headers.get("x-customer")  # B's own rule when it does not trust A

    app.add_middleware(DripMiddleware, customer=customer, trust_baggage=trust)
    return app


def service_a(b: httpx.AsyncClient, customer_id: str) -> FastAPI:
    app = FastAPI()

    @drip.metered(meter="reports")
    async def report(table: str) -> dict[str, object]:
        answer = await b.get(f"/scan/{table}", headers={"x-customer": customer_id})
        return dict(answer.json())

    @app.get("/report/{table}")
    async def handler(table: str) -> dict[str, object]:
        return {"a_run": current_run().id, "b": await report(table)}  # type: ignore[union-attr]

    app.add_middleware(DripMiddleware, customer=lambda request: customer_id)
    return app


async def call(trust: bool, customer_id: str) -> dict[str, object]:
    b = httpx.AsyncClient(transport=httpx.ASGITransport(service_b(trust)), base_url="http://b")
    drip_httpx.instrument(b)  # B's requests carry A's run in W3C baggage
    a = httpx.AsyncClient(
        transport=httpx.ASGITransport(service_a(b, customer_id)), base_url="http://a"
    )
    async with a, b:
        return dict((await a.get("/report/orders")).json())


def main() -> None:
    customer = drip.drip.create_customer(external_customer_id="example-two-services")
    trusted = asyncio.run(call(True, customer.id))
    untrusted = asyncio.run(call(False, customer.id))
    print(drip.flush(timeout=10))
    for label, answer in (("B trusts A", trusted), ("B does not", untrusted)):
        a_run, b_run = answer["a_run"], answer["b"]["run"]  # type: ignore[index]
        same = "the same run" if a_run == b_run else "two runs"
        meters = sorted(e.meter or "" for e in drip.drip.get_run_timeline(str(a_run)).events)
        print(f"{label}: {same}; A's run holds {meters}")


if __name__ == "__main__":
    main()
