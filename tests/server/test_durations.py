"""An event's ``durationMs`` out of range is clamped where it comes in, never refused (refusing
the event would lose its billed usage): negative is 0, more than ``MAX_DURATION_MS`` (30 days)
is that maximum, not finite (NaN, 1e400) is null. Durations stored before (by an older server)
are read the same way: every read answers valid JSON with the clamped value, never a 500."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from drip.server import start_server
from drip.server.storage.database import Database
from drip.server.storage.schema import events

#: 30 days in ms (``clock.MAX_DURATION_MS``)
MAX_DURATION_MS = 30 * 24 * 3600 * 1000
T0 = "2025-01-01T00:00:00.000000Z"


def strict_json(response: httpx.Response) -> Any:
    """The body, refusing what JSON has not (NaN, Infinity), as a browser's JSON.parse does."""
    assert response.status_code == 200, response.text

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant} in {response.text[:300]}")

    return json.loads(response.text, parse_constant=refuse)


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[httpx.Client, Database]]:
    server = start_server(database_url)
    key = server.create_key("durations")
    db = Database(database_url)
    with httpx.Client(
        base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        yield api, db
    db.dispose()
    server.stop()


def _event(eid: str, duration: str) -> str:
    return (
        f'{{"type":"event","id":"{eid}","runId":"run_d","eventType":"step","meter":"tokens",'
        f'"quantity":2,"timestamp":"{T0}","durationMs":{duration},"outcome":"ok"}}'
    )


def _durations(api: httpx.Client) -> dict[str, Any]:
    timeline = strict_json(api.get("/runs/run_d/timeline"))
    found = {e["id"]: e["durationMs"] for e in timeline["events"]}
    details = strict_json(api.get("/runs/run_d"))
    assert {e["id"]: e["durationMs"] for e in details["timeline"]} == found
    return found


def test_out_of_range_durations_are_clamped_at_ingest(
    served: tuple[httpx.Client, Database],
) -> None:
    api, _ = served
    items = [
        f'{{"type":"run.start","id":"run_d","externalCustomerId":"u1","workflow":"w",'
        f'"startedAt":"{T0}"}}',
        _event("e_neg", "-5"),
        _event("e_huge", "1e300"),
        _event("e_inf", "1e400"),
        _event("e_nan", "NaN"),
        _event("e_ok", "12.5"),
        # a full event (no meter: an event type), which takes the other row builder
        '{"type":"event","id":"e_full","runId":"run_d","eventType":"note","durationMs":-1}',
        # the columns item: a duration of 10^18 ns is ~31 years
        '{"type":"events","idPrefix":"col_","runs":[{"runId":"run_d"}],'
        '"meters":[{"eventType":"step","meter":"tokens","quantity":1}],'
        '"at":1735689600000000000,"seq":[1],"t":[0],"d":[1000000000000000000]}',
    ]
    answer = api.post("/ingest", content=f'{{"items":[{",".join(items)}]}}'.encode())
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in answer.json()["results"]} == {"created"}, answer.text
    # the single-event routes too
    for eid, duration in (("r_neg", -7), ("r_huge", 1e300)):
        sent = api.post(
            "/run-events",
            json={"id": eid, "runId": "run_d", "eventType": "step", "durationMs": duration},
        )
        assert sent.status_code in (200, 201), sent.text
    found = _durations(api)
    assert found.pop("col_0000000001") == MAX_DURATION_MS
    assert found == {
        "e_neg": 0,
        "e_huge": MAX_DURATION_MS,
        "e_inf": None,
        "e_nan": None,
        "e_ok": 12.5,
        "e_full": 0,
        "r_neg": 0,
        "r_huge": MAX_DURATION_MS,
    }
    # the usage they carry is all there: nothing was refused
    summary = strict_json(api.get("/usage/summary"))
    totals = {m["meter"]: m["quantity"] for m in summary["meters"]}
    assert totals == {"tokens": 5 * 2 + 1, "step": 2, "note": 1}


def test_durations_stored_by_an_older_server_are_read_clamped(
    served: tuple[httpx.Client, Database],
) -> None:
    api, db = served
    items = [
        f'{{"type":"run.start","id":"run_d","externalCustomerId":"u1","workflow":"w",'
        f'"startedAt":"{T0}"}}',
        *(_event(f"e{i}", "1") for i in range(5)),
        f'{{"type":"run.end","runId":"run_d","status":"COMPLETED","endedAt":"{T0}"}}',
    ]
    answer = api.post("/ingest", content=f'{{"items":[{",".join(items)}]}}'.encode())
    assert answer.status_code == 200, answer.text
    stored = {"e0": -5.0, "e1": 1e300, "e2": math.inf, "e3": -math.inf, "e4": math.nan}
    with db.write() as conn:
        for eid, value in stored.items():
            conn.execute(update(events).where(events.c.id == eid).values(duration_ms=value))
        # and an infinite quantity and cost (1e400 in a request to an older server)
        conn.execute(update(events).where(events.c.id == "e3").values(quantity=math.inf))
        conn.execute(update(events).where(events.c.id == "e4").values(cost_units=-math.inf))
    found = _durations(api)
    # SQLite stores NaN as NULL; PostgreSQL keeps it
    assert found == {"e0": 0, "e1": MAX_DURATION_MS, "e2": None, "e3": None, "e4": None}
    shown = {e["id"]: e for e in strict_json(api.get("/runs/run_d/timeline"))["events"]}
    assert (shown["e3"]["quantity"], shown["e3"]["metadata"]["quantity"]) == (0, 0)
    assert shown["e4"]["costUnits"] is None
    details = {e["id"]: e for e in strict_json(api.get("/runs/run_d"))["timeline"]}
    assert (details["e3"]["quantity"], details["e4"]["costUnits"]) == (0, None)
    runs = strict_json(api.get("/runs"))
    assert [r["durationMs"] for r in runs["data"]] == [0]
    strict_json(api.get("/usage/summary", params={"groupBy": "customer,meter"}))
    strict_json(api.get("/runs/run_d/timeline", params={"limit": 2}))
