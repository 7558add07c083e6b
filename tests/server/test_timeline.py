"""GET /v1/runs/{id}/timeline: events rendered straight from rows, and paged by cursor."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import null, select

from drip.models import RunTimeline, TimelineEvent
from drip.server.pricing import Pricing, format_usdc
from drip.server.storage.schema import events
from drip.server.storage.timeline import get_timeline


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


def _mixed_run(api: httpx.Client, customer_id: str) -> list[dict[str, Any]]:
    """A run whose events have priced meters, unpriced meters and no meter: each kind of
    ``costUsdc`` the database and the server write."""
    items: list[dict[str, Any]] = [
        {"type": "run.start", "id": "run_m", "customerId": customer_id, "workflow": "agent"}
    ]
    plan = [("api_calls", 2), ("llm_tokens", 1500), ("api_calls", 0.5), (None, 1), ("x", 3)]
    for i, (meter, quantity) in enumerate(plan * 3):
        item: dict[str, Any] = {
            "type": "event",
            "id": f"evt_m{i}",
            "runId": "run_m",
            "eventType": "step" if meter is None else "llm.call",
            "quantity": quantity,
            "timestamp": f"2026-11-30T10:00:{i:02d}.000000Z",
        }
        if meter is not None:
            item["meter"] = meter
        if i % 5 == 1:
            item["metadata"] = {"model": "m", "quantity": "theirs"}
        items.append(item)
    response = api.post("/ingest", json={"items": items})
    assert response.status_code == 200 and response.json()["created"] == len(items)
    events: list[dict[str, Any]] = api.get("/runs/run_m/timeline").json()["events"]
    return events


def test_priced_and_unpriced_meters_cost_as_the_pricing_says(
    api: httpx.Client, customer_id: str
) -> None:
    events = _mixed_run(api, customer_id)
    assert len(events) == 15
    for event in events:
        assert TimelineEvent.model_validate(event).model_dump(mode="json", by_alias=True) == event
    costs = {(e["meter"], e["quantity"]): e["costUsdc"] for e in events}
    # api_calls is priced at 0.001 in the test server; the other meters cost nothing
    assert costs[("api_calls", 2.0)] == "0.002000"
    assert costs[("api_calls", 0.5)] == "0.000500"
    assert costs[("llm_tokens", 1500.0)] == "0.000000"
    assert costs[("x", 3.0)] == "0.000000"
    # the server's quantity and units replace the metadata's own keys, in place
    assert events[1]["metadata"] == {"model": "m", "quantity": 1500.0, "units": None}


def test_a_default_price_prices_every_meter_not_listed(
    api: httpx.Client, customer_id: str, account: Any, live_server: Any
) -> None:
    _mixed_run(api, customer_id)
    state = live_server._state
    principal = state.keys.verify(account.secret_key)
    pricing = Pricing.build({"api_calls": "0", "x": "0.5"}, default="0.000002")
    body = json.loads(get_timeline(state.db, pricing, principal.account_id, "run_m", None))
    RunTimeline.model_validate(body)
    for event in body["events"]:
        expected = format_usdc(pricing.micros(event["meter"], event["quantity"]))
        assert event["costUsdc"] == expected, event
    costs = {(e["meter"], e["quantity"]): e["costUsdc"] for e in body["events"]}
    assert costs[("api_calls", 2.0)] == "0.000000"  # listed at 0: free despite the default
    assert costs[("x", 3.0)] == "1.500000"
    assert costs[("llm_tokens", 1500.0)] == "0.003000"  # the default price


def test_the_database_prices_whole_quantities_as_the_server_would(
    api: httpx.Client, customer_id: str, account: Any, live_server: Any, monkeypatch: Any
) -> None:
    """Whole, non-negative quantities are priced by the database in integer arithmetic,
    rounded half up as ``Pricing.micros`` rounds; the page is the same when the server
    prices every event itself."""
    from drip.server.storage import timeline

    _mixed_run(api, customer_id)
    state = live_server._state
    account_id = state.keys.verify(account.secret_key).account_id
    pricings = [
        Pricing.build({"llm_tokens": "0.0000025", "x": "0.3333333"}),  # half micros: 3750
        Pricing.build({"api_calls": "7"}, default="0.0000005"),  # 0.5 micro: 1 -> 1 (half up)
        Pricing.build({"x": "0.1234567891234"}, default="12345.678901"),
    ]
    e = events
    for pricing in pricings:
        micros = timeline._sql_micros(pricing)
        with state.db.read() as conn:
            rows = conn.execute(
                select(e.c.meter, e.c.quantity, timeline._usdc_text(state.db.dialect, micros))
                .where(e.c.account_id == account_id, e.c.run_id == "run_m")
                .where(micros.is_not(None))
            ).all()
        assert len(rows) >= 6  # priced in SQL: the whole quantities of priced meters
        for meter, quantity, text in rows:
            assert text == format_usdc(pricing.micros(meter, quantity)), (meter, quantity)
        body = get_timeline(state.db, pricing, account_id, "run_m", None)
        for event in json.loads(body)["events"]:
            expected = format_usdc(pricing.micros(event["meter"], event["quantity"]))
            assert event["costUsdc"] == expected, (event, pricing)
        with monkeypatch.context() as patch:  # every priced event priced by the server
            patch.setattr(timeline, "_sql_micros", lambda _pricing: null())
            patch.setattr(timeline, "_COLUMNS", {})  # not the column built before the patch
            assert get_timeline(state.db, pricing, account_id, "run_m", None) == body
