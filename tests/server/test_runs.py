"""Runs and run events: start, end, events, record, details, timeline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


def start(api: httpx.Client, customer_id: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        "/runs", json={"customerId": customer_id, "workflowId": "research-agent", **extra}
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def test_start_run_by_slug_creates_the_workflow(api: httpx.Client, customer_id: str) -> None:
    run = start(api, customer_id)
    assert {
        "id",
        "customerId",
        "workflowId",
        "workflowName",
        "status",
        "correlationId",
        "createdAt",
    } <= run.keys()
    assert run["status"] == "RUNNING" and run["correlationId"] is None
    assert run["workflowName"] == "Research Agent"
    workflows = api.get("/workflows").json()["data"]
    assert [(w["id"], w["slug"]) for w in workflows] == [(run["workflowId"], "research-agent")]
    # by id too, and the slug is not created twice
    again = api.post(
        "/runs", json={"customerId": customer_id, "workflowId": run["workflowId"]}
    ).json()
    assert again["workflowId"] == run["workflowId"] and api.get("/workflows").json()["count"] == 1


def test_unknown_workflow_id_and_customer_are_422(api: httpx.Client, customer_id: str) -> None:
    bad = api.post("/runs", json={"customerId": customer_id, "workflowId": "wf_" + "0" * 32})
    assert bad.status_code == 422 and bad.json()["code"] == "WORKFLOW_NOT_FOUND"
    bad = api.post("/runs", json={"customerId": "cus_x", "workflowId": "w"})
    assert bad.status_code == 422 and bad.json()["code"] == "CUSTOMER_NOT_FOUND"


def test_client_id_and_external_id_deduplicate(api: httpx.Client, customer_id: str) -> None:
    first = start(api, customer_id, id="run_client_1", correlationId="c1")
    assert first["id"] == "run_client_1" and first["isDuplicate"] is False
    repeat = api.post(
        "/runs",
        json={"customerId": customer_id, "workflowId": "research-agent", "id": "run_client_1"},
    )
    assert repeat.status_code == 200 and repeat.json()["isDuplicate"] is True
    ext = start(api, customer_id, externalRunId="job-7")
    ext_again = start(api, customer_id, externalRunId="job-7")
    assert ext_again["id"] == ext["id"] and ext_again["isDuplicate"] is True
    other = api.post("/customers", json={"externalCustomerId": "other"}).json()["id"]
    assert start(api, other, externalRunId="job-7")["id"] != ext["id"]


def test_end_run_and_end_again(api: httpx.Client, customer_id: str) -> None:
    run = start(api, customer_id)
    api.post("/run-events", json={"runId": run["id"], "eventType": "step", "costUnits": 0.5})
    ended = api.patch(f"/runs/{run['id']}", json={"status": "COMPLETED"})
    assert ended.status_code == 200
    body = ended.json()
    assert body["status"] == "COMPLETED" and body["endedAt"] and body["eventCount"] == 1
    assert isinstance(body["durationMs"], int) and body["totalCostUnits"] == "0.5"
    assert body["isDuplicate"] is False
    same = api.patch(f"/runs/{run['id']}", json={"status": "COMPLETED"}).json()
    assert same["endedAt"] == body["endedAt"] and same["isDuplicate"] is True
    assert api.patch(f"/runs/{run['id']}", json={"status": "RUNNING"}).status_code == 422
    assert api.patch(f"/runs/{run['id']}", json={"status": "completed"}).status_code == 422


def test_the_first_end_of_a_run_wins(api: httpx.Client, customer_id: str) -> None:
    """COMPLETED then FAILED: the run stays COMPLETED, and the second end answers 200 (the
    published run() sends it when its COMPLETED end raised) with the stored status, marked a
    duplicate; it changes neither the end time, nor the error, nor the metadata."""
    run = start(api, customer_id)
    body = api.patch(f"/runs/{run['id']}", json={"status": "COMPLETED"}).json()
    failed = api.patch(
        f"/runs/{run['id']}",
        json={
            "status": "FAILED",
            "errorMessage": "boom",
            "errorCode": "E1",
            "metadata": {"late": 1},
            "endedAt": "2031-01-01T00:00:00Z",
        },
    )
    assert failed.status_code == 200
    assert (failed.json()["status"], failed.json()["isDuplicate"]) == ("COMPLETED", True)
    assert failed.json()["endedAt"] == body["endedAt"]
    details = api.get(f"/runs/{run['id']}").json()
    assert details["status"] == "COMPLETED" and details["endedAt"] == body["endedAt"]
    assert (details["errorMessage"], details["errorCode"]) == (None, None)
    assert "late" not in (details.get("metadata") or {})
    for status in ("CANCELLED", "TIMEOUT", "COMPLETED"):
        again = api.patch(f"/runs/{run['id']}", json={"status": status}).json()
        assert (again["status"], again["isDuplicate"]) == ("COMPLETED", True)
    other = start(api, customer_id)
    failed_first = api.patch(
        f"/runs/{other['id']}", json={"status": "FAILED", "errorMessage": "boom"}
    ).json()
    assert (failed_first["status"], failed_first["isDuplicate"]) == ("FAILED", False)
    late = api.patch(f"/runs/{other['id']}", json={"status": "COMPLETED"}).json()
    assert (late["status"], late["isDuplicate"]) == ("FAILED", True)
    assert api.get(f"/runs/{other['id']}").json()["errorMessage"] == "boom"


def test_a_run_recorded_empty_takes_one_later_end(api: httpx.Client, customer_id: str) -> None:
    """The published LangChain handler's start_run() records an empty COMPLETED run (no times:
    it starts and ends at one instant), adds events, then ends it with its real status: that
    end is taken once; a later one is a duplicate, as for any other run."""
    recorded = api.post(
        "/runs/record", json={"customerId": customer_id, "workflow": "lc-manual", "events": []}
    ).json()
    run_id = recorded["run"]["id"]
    api.post("/run-events", json={"runId": run_id, "eventType": "llm.completion"})
    failed = api.patch(f"/runs/{run_id}", json={"status": "FAILED", "errorMessage": "boom"})
    assert failed.status_code == 200
    assert (failed.json()["status"], failed.json()["isDuplicate"]) == ("FAILED", False)
    details = api.get(f"/runs/{run_id}").json()
    assert (details["status"], details["errorMessage"]) == ("FAILED", "boom")
    assert details["endedAt"] != details["startedAt"]
    late = api.patch(f"/runs/{run_id}", json={"status": "COMPLETED"}).json()
    assert (late["status"], late["isDuplicate"]) == ("FAILED", True)


def test_events_on_a_terminal_run_are_accepted(api: httpx.Client, customer_id: str) -> None:
    run = start(api, customer_id)
    api.patch(f"/runs/{run['id']}", json={"status": "COMPLETED"})
    late = api.post("/run-events", json={"runId": run["id"], "eventType": "late"})
    assert late.status_code == 201 and late.json()["quantity"] == 1


def test_emit_event_and_duplicates(api: httpx.Client, customer_id: str) -> None:
    run = start(api, customer_id)
    first = api.post(
        "/run-events",
        json={
            "runId": run["id"],
            "eventType": "llm.call",
            "quantity": 10,
            "idempotencyKey": "e1",
            "costUnits": 0.25,
        },
    )
    assert first.status_code == 201
    body = first.json()
    assert {
        "id",
        "runId",
        "eventType",
        "quantity",
        "costUnits",
        "isDuplicate",
        "timestamp",
    } <= body.keys()
    again = api.post(
        "/run-events",
        json={"runId": run["id"], "eventType": "llm.call", "quantity": 99, "idempotencyKey": "e1"},
    )
    assert again.status_code == 200
    assert (
        again.json()["id"] == body["id"]
        and again.json()["isDuplicate"] is True
        and again.json()["quantity"] == 10
    )
    by_id = api.post(
        "/run-events", json={"runId": run["id"], "eventType": "x", "id": "evt_client_1"}
    )
    assert by_id.json()["id"] == "evt_client_1"
    assert api.post(
        "/run-events", json={"runId": run["id"], "eventType": "x", "id": "evt_client_1"}
    ).json()["isDuplicate"]
    missing = api.post("/run-events", json={"runId": "run_nope", "eventType": "x"})
    assert missing.status_code == 422 and missing.json()["code"] == "RUN_NOT_FOUND"
    assert api.get(f"/runs/{run['id']}").json()["totals"]["eventCount"] == 2


def test_events_batch_per_item(api: httpx.Client, customer_id: str) -> None:
    run = start(api, customer_id)
    response = api.post(
        "/run-events/batch",
        json={
            "events": [
                {"runId": run["id"], "eventType": "a", "quantity": 2, "idempotencyKey": "b1"},
                {"run_id": run["id"], "event_type": "b", "idempotency_key": "b2"},
                {"runId": run["id"], "eventType": "a", "idempotencyKey": "b1"},
                {"runId": "run_nope", "eventType": "c"},
                {"runId": run["id"], "quantity": "NaN-ish"},
            ]
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["duplicates"], body["skipped"]) == (2, 1, 2)
    items = body["events"]
    assert [e["eventType"] for e in items[:3]] == ["a", "b", "a"]
    assert items[2]["isDuplicate"] is True and items[2]["id"] == items[0]["id"]
    assert items[3]["skipped"] is True and "RUN_NOT_FOUND" in items[3]["reason"]
    assert items[4]["skipped"] is True and "events[4]" in items[4]["reason"]
    again = api.post(
        "/run-events/batch",
        json={"events": [{"runId": run["id"], "eventType": "b", "idempotencyKey": "b2"}]},
    )
    assert again.json()["duplicates"] == 1 and again.json()["created"] == 0
    assert api.post("/run-events/batch", json={"events": "nope"}).status_code == 422


def test_get_run_details(api: httpx.Client, customer_id: str) -> None:
    parent = start(api, customer_id)
    run = start(
        api, customer_id, parentRunId=parent["id"], correlationId="trace-1", metadata={"k": 1}
    )
    api.post(
        "/run-events",
        json={"runId": run["id"], "eventType": "llm.call", "quantity": 1700, "units": "tokens"},
    )
    api.post("/run-events", json={"runId": run["id"], "eventType": "tool.call", "quantity": 1.5})
    details = api.get(f"/runs/{run['id']}").json()
    assert details["parentRunId"] == parent["id"] and details["correlationId"] == "trace-1"
    assert details["customerName"] == "user_123" and details["metadata"] == {"k": 1}
    assert details["totals"] == {
        "eventCount": 2,
        "totalQuantity": "1701.5",
        "totalCostUnits": "0",
        "totalChargedUsdc": "0.000000",
    }
    assert details["_links"]["timeline"] == f"/v1/runs/{run['id']}/timeline"
    assert details["summary"] == "2 events"
    assert [e["eventType"] for e in details["timeline"]] == ["llm.call", "tool.call"]


def test_timeline_shape(api: httpx.Client, customer_id: str) -> None:
    run = start(api, customer_id)
    first = api.post(
        "/run-events",
        json={
            "runId": run["id"], "eventType": "api_calls", "quantity": 4, "units": "calls",
            "metadata": {"model": "m"}, "spanId": "00f067aa0ba902b7", "durationMs": 12.5, "outcome": "ok",
            "correlationId": "4bf92f3577b34da6a3ce929d0e0e4736",
        },
    ).json()  # fmt: skip
    api.post(
        "/run-events", json={"runId": run["id"], "eventType": "child", "parentEventId": first["id"]}
    )
    api.patch(f"/runs/{run['id']}", json={"status": "COMPLETED"})
    timeline = api.get(
        f"/runs/{run['id']}/timeline", params={"limit": 50, "includeAnomalies": "false"}
    ).json()
    assert timeline["runId"] == run["id"] and timeline["status"] == "COMPLETED"
    assert timeline["workflowName"] == "Research Agent" and timeline["customerId"] == customer_id
    event = timeline["events"][0]
    assert event["quantity"] == 4 and event["units"] == "calls"
    assert event["metadata"] == {"model": "m", "quantity": 4, "units": "calls"}
    assert event["costUsdc"] == "0.004000"  # api_calls at 0.001
    assert (event["spanId"], event["durationMs"], event["outcome"]) == (
        "00f067aa0ba902b7",
        12.5,
        "ok",
    )
    assert event["correlationId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert timeline["events"][1]["parentEventId"] == first["id"]
    assert (
        timeline["summary"]["totalEvents"] == 2
        and timeline["summary"]["totalChargedUsdc"] == "0.004000"
    )
    limited = api.get(f"/runs/{run['id']}/timeline", params={"limit": 1}).json()
    assert len(limited["events"]) == 1 and limited["summary"]["totalEvents"] == 2


def test_record_run_readme_example(api: httpx.Client, customer_id: str) -> None:
    response = api.post(
        "/runs/record",
        json={
            "customerId": customer_id,
            "workflow": "research-agent",
            "events": [
                {"eventType": "llm.call", "quantity": 1700, "units": "tokens"},
                {"eventType": "tool.call", "quantity": 1},
                {"eventType": "tool.call"},
            ],
            "status": "COMPLETED",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["events"] == {"created": 3, "duplicates": 0}
    assert body["run"]["status"] == "COMPLETED" and body["run"]["workflowName"] == "Research Agent"
    assert "durationMs" in body["run"] and "totalCostUnits" in body
    assert body["summary"] == "\u2713 Research Agent: 3 events recorded (0ms)"
    details = api.get(f"/runs/{body['run']['id']}").json()
    # two identical tool.call events are not merged, and a missing quantity counts 1
    assert details["totals"]["eventCount"] == 3 and details["totals"]["totalQuantity"] == "1702"


def test_record_run_repeat_and_bad_references(api: httpx.Client, customer_id: str) -> None:
    body = {
        "customerId": customer_id,
        "workflow": "w",
        "events": [{"eventType": "a"}],
        "status": "FAILED",
        "externalRunId": "ext-1",
    }
    first = api.post("/runs/record", json=body).json()
    again = api.post("/runs/record", json=body).json()
    assert again["run"]["id"] == first["run"]["id"] and again["events"] == {
        "created": 0,
        "duplicates": 1,
    }
    assert first["summary"].startswith("\u2717 ")
    by_id = {**body, "externalRunId": None, "id": "run_rec_1"}
    assert api.post("/runs/record", json=by_id).json()["run"]["id"] == "run_rec_1"
    assert api.post("/runs/record", json=by_id).json()["events"]["duplicates"] == 1
    unknown = api.post(
        "/runs/record", json={**body, "customerId": "cus_missing", "externalRunId": "e2"}
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "CUSTOMER_NOT_FOUND"


@pytest.mark.parametrize("limit", [0, 10_001])
def test_timeline_limit_bounds(api: httpx.Client, customer_id: str, limit: int) -> None:
    run = start(api, customer_id)
    assert api.get(f"/runs/{run['id']}/timeline", params={"limit": limit}).status_code == 422


def test_list_runs_newest_first(api: httpx.Client, customer_id: str) -> None:
    ids = [start(api, customer_id)["id"] for _ in range(3)]
    listed = api.get("/runs", params={"limit": 2}).json()
    assert [r["id"] for r in listed["data"]] == ids[::-1][:2]


def test_an_auto_created_workflow_titles_only_slugs() -> None:
    from drip.server.storage.workflows import _title

    assert _title("research-agent") == "Research Agent"
    assert _title("qa_graph") == "Qa Graph"
    assert _title("GET /items/{item_id}") == "GET /items/{item_id}"
    assert _title("MyGraph") == "MyGraph"
