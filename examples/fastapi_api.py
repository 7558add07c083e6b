"""Meter a FastAPI service: one run per request, metered after the response is sent.

Run: DRIP_BASE_URL=local python examples/fastapi_api.py   (needs drip-sdk[server,fastapi])
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

from drip.integrations.fastapi import DripMiddleware
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

import drip

API_KEYS: dict[str, str] = {}  # the app's own API keys -> drip customer ids


@drip.metered(meter="llm_tokens", units="tokens", quantity=lambda text: len(text.split()))
async def generate(prompt: str) -> str:
    await asyncio.sleep(0.01)
    return f"an answer about {prompt} in a few words"


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/answers/{topic}")
    async def answer(topic: str) -> dict[str, str]:
        return {"answer": await generate(topic)}

    @app.get("/stream/{topic}")
    async def stream(topic: str) -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for part in ("intro", "body", "outro"):
                yield await generate(f"{topic} {part}") + "\n"

        return StreamingResponse(chunks())

    @app.get("/health")
    async def health() -> str:
        return "ok"

    def customer(request: Request) -> str | None:
        return API_KEYS.get(request.headers.get("x-api-key", ""))

    app.add_middleware(DripMiddleware, customer=customer, exclude=["/health"])
    return app


def main() -> None:
    # what this execution records, read back below: the local database keeps earlier runs
    since = datetime.now(timezone.utc) - timedelta(milliseconds=1)
    for name in ("acme", "globex"):
        API_KEYS[f"key-{name}"] = drip.drip.create_customer(external_customer_id=name).id
    with TestClient(make_app()) as http:
        for i in range(6):
            http.get(f"/answers/topic{i}", headers={"x-api-key": "key-acme"})
        http.get("/stream/pricing", headers={"x-api-key": "key-globex"})
        http.get("/health", headers={"x-api-key": "key-acme"})  # excluded: not metered
        http.get("/health")  # no API key: served, not metered
    print(drip.flush(timeout=10))
    for name in ("acme", "globex"):
        summary = drip.drip.get_usage_summary(customer_id=API_KEYS[f"key-{name}"], since=since)
        usage = {m.meter: m.quantity for m in summary.meters}
        print(f"{name}: {usage['api_calls']:g} requests, {usage['llm_tokens']:g} tokens")
    [streamed] = drip.drip.list_runs(customer_id=API_KEYS["key-globex"], since=since).data
    timeline = drip.drip.get_run_timeline(streamed.id)
    print(f"streamed request run: {timeline.status.value}")
    for event in timeline.events:
        print(f"  {event.meter:<10} {event.quantity:g}  {event.metadata or ''}")


if __name__ == "__main__":
    main()
