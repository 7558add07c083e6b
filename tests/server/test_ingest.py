"""POST /v1/ingest: order, duplicates, rejections, run ends."""

from __future__ import annotations

from typing import Any

import httpx


def ingest(api: httpx.Client, *items: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/ingest", json={"items": list(items)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def statuses(result: dict[str, Any]) -> list[str]:
    return [r["status"] for r in result["results"]]


def run_start(run_id: str, customer_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "run.start",
        "id": run_id,
        "customerId": customer_id,
        "workflow": "agent",
        **extra,
    }


def event(event_id: str, run_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "event", "id": event_id, "runId": run_id, "eventType": "llm.call", **extra}


def test_a_whole_run_in_one_batch(api: httpx.Client, customer_id: str) -> None:
    result = ingest(
        api,
        run_start(
            "run_a", customer_id, correlationId="t1", startedAt="2025-01-01T00:00:00.000000Z"
        ),
        event(
            "evt_1", "run_a", quantity=5, units="tokens", timestamp="2025-01-01T00:00:00.100000Z"
        ),
        event("evt_2", "run_a", parentEventId="evt_1", meter="tokens", quantity=7),
        {
            "type": "usage",
            "id": "use_1",
            "customerId": customer_id,
            "usageType": "tokens",
            "quantity": 3,
        },
        {
            "type": "run.end",
            "runId": "run_a",
            "status": "COMPLETED",
            "endedAt": "2025-01-01T00:00:01.500000Z",
        },
    )
    assert statuses(result) == ["created", "created", "created", "created", "updated"]
    assert (result["created"], result["updated"], result["duplicates"], result["rejected"]) == (
        4,
        1,
        0,
        0,
    )
    assert [r["index"] for r in result["results"]] == [0, 1, 2, 3, 4]
    assert [r["id"] for r in result["results"]] == ["run_a", "evt_1", "evt_2", "use_1", "run_a"]
    details = api.get("/runs/run_a").json()
    assert details["status"] == "COMPLETED" and details["durationMs"] == 1500
    assert details["customerId"] == customer_id and details["correlationId"] == "t1"
    timeline = api.get("/runs/run_a/timeline").json()
    assert [e["id"] for e in timeline["events"]] == ["evt_1", "evt_2"]
    assert timeline["events"][1]["parentEventId"] == "evt_1"
    meters = {
        m["meter"]: m
        for m in api.get("/usage/summary", params={"customerId": customer_id}).json()["meters"]
    }
    assert meters["tokens"]["quantity"] == 10 and meters["llm.call"]["quantity"] == 5


def test_order_matters(api: httpx.Client, customer_id: str) -> None:
    result = ingest(
        api,
        event("evt_early", "run_b"),
        {"type": "run.end", "runId": "run_b", "status": "FAILED"},
        run_start("run_b", customer_id),
        event("evt_late", "run_b"),
    )
    assert statuses(result) == ["rejected", "rejected", "created", "created"]
    assert [r["code"] for r in result["results"][:2]] == ["RUN_NOT_FOUND", "RUN_NOT_FOUND"]
    assert api.get("/runs/run_b").json()["status"] == "RUNNING"


def test_duplicates_in_and_across_batches(api: httpx.Client, customer_id: str) -> None:
    first = ingest(
        api, run_start("run_c", customer_id), event("evt_c1", "run_c"), event("evt_c1", "run_c")
    )
    assert statuses(first) == ["created", "created", "duplicate"]
    again = ingest(
        api,
        run_start("run_c", customer_id),
        event("evt_c1", "run_c", quantity=50),
        event("evt_c2", "run_c"),
        {
            "type": "usage",
            "id": "use_c",
            "customerId": customer_id,
            "usageType": "m",
            "quantity": 1,
        },
    )
    assert statuses(again) == ["duplicate", "duplicate", "created", "created"]
    assert again["duplicates"] == 2 and again["created"] == 2
    third = ingest(
        api,
        {
            "type": "usage",
            "id": "use_c",
            "customerId": customer_id,
            "usageType": "m",
            "quantity": 1,
        },
    )
    assert statuses(third) == ["duplicate"]
    totals = api.get("/runs/run_c").json()["totals"]
    assert totals["eventCount"] == 2 and totals["totalQuantity"] == "2"


def test_run_end_twice(api: httpx.Client, customer_id: str) -> None:
    ingest(api, run_start("run_d", customer_id))
    end = {"type": "run.end", "runId": "run_d", "status": "COMPLETED"}
    assert statuses(ingest(api, end)) == ["updated"]
    assert statuses(ingest(api, end, end)) == ["duplicate", "duplicate"]
    bad = ingest(api, {"type": "run.end", "runId": "run_d", "status": "RUNNING"})
    assert bad["results"][0]["code"] == "INVALID_STATUS"


def test_the_first_end_of_a_run_wins(api: httpx.Client, customer_id: str) -> None:
    """An end with another status after the run ended (in an earlier batch, or earlier in the
    same one) changes nothing: a duplicate whose code and message name the stored status."""
    ingest(api, run_start("run_w", customer_id), run_start("run_x", customer_id))
    done = {"type": "run.end", "runId": "run_w", "status": "COMPLETED"}
    assert statuses(ingest(api, done)) == ["updated"]
    failed = {"type": "run.end", "runId": "run_w", "status": "FAILED", "errorMessage": "boom"}
    late = ingest(api, failed)["results"][0]
    assert (late["status"], late["code"]) == ("duplicate", "RUN_ALREADY_ENDED")
    assert "COMPLETED" in late["message"]
    one_batch = ingest(
        api,
        {"type": "run.end", "runId": "run_x", "status": "FAILED", "errorCode": "E"},
        {"type": "run.end", "runId": "run_x", "status": "COMPLETED"},
    )
    assert statuses(one_batch) == ["updated", "duplicate"]
    assert one_batch["results"][1]["code"] == "RUN_ALREADY_ENDED"
    assert "FAILED" in one_batch["results"][1]["message"]
    compact = api.post("/ingest?results=compact", json={"items": [failed]}).json()
    assert compact["statuses"] == "d" and compact["results"][0]["code"] == "RUN_ALREADY_ENDED"
    for run_id, status, error in (("run_w", "COMPLETED", None), ("run_x", "FAILED", "E")):
        stored = api.get(f"/runs/{run_id}").json()
        assert (stored["status"], stored["errorCode"], stored["errorMessage"]) == (
            status,
            error,
            None,
        )
    # PATCH after an ingest end: the same rule
    patched = api.patch("/runs/run_w", json={"status": "TIMEOUT"}).json()
    assert (patched["status"], patched["isDuplicate"]) == ("COMPLETED", True)


def test_bad_items_are_rejected_alone(api: httpx.Client, customer_id: str) -> None:
    result = ingest(
        api,
        run_start("run_e", customer_id),
        event("evt_e1", "run_e", quantity="many"),
        {"type": "teleport", "id": "x"},
        "not an object",
        event("evt_e2", "run_e", timestamp="yesterday"),
        event("evt_e3", "run_e", timestamp="2025-06-01T12:00:00+02:00"),
        run_start("run_f", "cus_nobody"),
        {
            "type": "usage",
            "id": "use_e",
            "customerId": "cus_nobody",
            "usageType": "m",
            "quantity": 1,
        },
        event("evt_e4", "run_e", quantity=True),
    )
    assert statuses(result) == [
        "created", "rejected", "rejected", "rejected", "rejected", "created", "rejected", "rejected", "rejected",
    ]  # fmt: skip
    codes = [r["code"] for r in result["results"]]
    assert codes[1:5] == [
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "INVALID_TIMESTAMP",
    ]
    assert codes[6:] == ["CUSTOMER_NOT_FOUND", "CUSTOMER_NOT_FOUND", "VALIDATION_ERROR"]
    assert (
        "items[1]" in result["results"][1]["message"]
        and "quantity" in result["results"][1]["message"]
    )
    assert result["results"][1]["id"] == "evt_e1"
    assert result["rejected"] == 7 and result["created"] == 2
    timeline = api.get("/runs/run_e/timeline").json()
    assert [e["timestamp"] for e in timeline["events"]] == ["2025-06-01T10:00:00.000000Z"]


def test_events_inherit_the_run_customer(api: httpx.Client, customer_id: str) -> None:
    other = api.post("/customers", json={"externalCustomerId": "other"}).json()["id"]
    ingest(api, run_start("run_g", other), event("evt_g", "run_g", quantity=9))
    assert api.get("/usage/summary", params={"customerId": customer_id}).json()["meters"] == []
    assert (
        api.get("/usage/summary", params={"customerId": other}).json()["meters"][0]["quantity"] == 9
    )


def test_runs_started_by_other_means_are_known(api: httpx.Client, customer_id: str) -> None:
    run = api.post(
        "/runs", json={"customerId": customer_id, "workflowId": "w", "id": "run_h"}
    ).json()
    assert statuses(ingest(api, event("evt_h", run["id"]))) == ["created"]


def test_workflow_by_slug_is_created_once(api: httpx.Client, customer_id: str) -> None:
    ingest(
        api,
        run_start("run_i1", customer_id, workflow="new-flow"),
        run_start("run_i2", customer_id, workflow="new-flow"),
    )
    workflows = api.get("/workflows").json()["data"]
    assert [w["slug"] for w in workflows] == ["new-flow"]
    assert api.get("/runs/run_i2").json()["workflowId"] == workflows[0]["id"]


def test_malformed_requests(api: httpx.Client) -> None:
    assert api.post("/ingest", json={"items": "x"}).status_code == 422
    assert api.post("/ingest", json={}).status_code == 422
    response = api.post("/ingest", content=b"{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "INVALID_JSON"
    assert ingest(api) == {
        "results": [],
        "created": 0,
        "duplicates": 0,
        "updated": 0,
        "rejected": 0,
    }


def test_a_big_batch(api: httpx.Client, customer_id: str) -> None:
    items = [run_start("run_big", customer_id)] + [
        event(f"evt_big_{i}", "run_big", quantity=1) for i in range(2000)
    ]
    result = ingest(api, *items)
    assert result["created"] == 2001
    assert api.get("/runs/run_big").json()["totals"]["eventCount"] == 2000
