"""GET /v1/runs/{id}/timeline: events rendered straight from rows, and paged by cursor."""

from __future__ import annotations

from typing import Any

import httpx

from drip.models import RunTimeline, TimelineEvent


def _run_with_events(api: httpx.Client, customer_id: str, count: int) -> str:
    items: list[dict[str, Any]] = [
        {"type": "run.start", "id": "run_t", "customerId": customer_id, "workflow": "agent"}
    ]
    for i in range(count):
        item: dict[str, Any] = {
            "type": "event",
            "id": f"evt_{i}",
            "runId": "run_t",
            "eventType": "llm.call",
            "meter": "api_calls",
            "quantity": 1 + i % 3,
            # a few share a timestamp: ties are ordered by insertion
            "timestamp": f"2026-11-30T10:00:{i // 2:02d}.000000Z",
        }
        if i % 4 == 0:
            item.update(
                units="tokens",
                description="d",
                parentEventId="evt_0",
                spanId="00f067aa0ba902b7",
                metadata={"model": "m", "n": i},
                outcome="error",
                errorType="TimeoutError",
                durationMs=1.5,
            )
        items.append(item)
    response = api.post("/ingest", json={"items": items})
    assert response.status_code == 200 and response.json()["created"] == count + 1
    return "run_t"


def test_events_render_as_the_model_would(api: httpx.Client, customer_id: str) -> None:
    run_id = _run_with_events(api, customer_id, 8)
    body = api.get(f"/runs/{run_id}/timeline").json()
    for event in body["events"]:
        assert TimelineEvent.model_validate(event).model_dump(mode="json", by_alias=True) == event
    parsed = RunTimeline.model_validate(body)
    assert parsed.model_dump(mode="json", by_alias=True) == body
    first = body["events"][0]
    assert first["costUsdc"] == "0.001000"  # api_calls is priced at 0.001 in the test server
    assert first["metadata"] == {"model": "m", "n": 0, "quantity": 1.0, "units": "tokens"}
    details = api.get(f"/runs/{run_id}").json()
    assert details["timeline"] == body["events"]


def test_pages_cover_every_event_once_in_order(api: httpx.Client, customer_id: str) -> None:
    run_id = _run_with_events(api, customer_id, 25)
    whole = api.get(f"/runs/{run_id}/timeline").json()
    assert whole["hasMore"] is False and whole["nextCursor"] is None
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = api.get(f"/runs/{run_id}/timeline", params=params).json()
        seen += [e["id"] for e in page["events"]]
        assert page["summary"]["totalEvents"] == 25  # the summary covers the whole run
        pages += 1
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            break
    assert pages == 3 and seen == [e["id"] for e in whole["events"]]
    assert seen == [f"evt_{i}" for i in range(25)]
    bad = api.get(f"/runs/{run_id}/timeline", params={"cursor": "zzz"})
    assert bad.status_code == 422 and bad.json()["code"] == "INVALID_CURSOR"
