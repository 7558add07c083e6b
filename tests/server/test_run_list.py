"""GET /v1/runs: filters, per-run totals and keyset paging while runs keep arriving."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

_ids = itertools.count()


def _customer(api: httpx.Client, external: str) -> str:
    response = api.post("/customers", json={"externalCustomerId": external})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _start(customer: str, started_at: str, workflow: str = "agent", **extra: Any) -> dict[str, Any]:
    return {
        "type": "run.start",
        "id": f"run_{next(_ids)}",
        "customerId": customer,
        "workflow": workflow,
        "startedAt": started_at,
        **extra,
    }


def _ingest(api: httpx.Client, items: list[dict[str, Any]]) -> None:
    response = api.post("/ingest", json={"items": items})
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text


def _page(api: httpx.Client, **params: Any) -> dict[str, Any]:
    response = api.get("/runs", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_run_fields_and_filters(api: httpx.Client) -> None:
    a, b = _customer(api, "runs-a"), _customer(api, "runs-b")
    first = _start(a, "2026-11-30T10:00:00.000000Z", workflow="alpha")
    second = _start(b, "2026-11-30T11:00:00.000000Z", workflow="beta")
    rid = first["id"]
    _ingest(
        api,
        [
            first,
            second,
            {"type": "event", "id": "x1", "runId": rid, "eventType": "llm", "meter": "tokens",
             "quantity": 0.1, "timestamp": "2026-11-30T10:00:01.000000Z"},
            {"type": "event", "id": "x2", "runId": rid, "eventType": "llm", "meter": "tokens",
             "quantity": 0.2, "timestamp": "2026-11-30T10:00:02.000000Z"},
            {"type": "event", "id": "x3", "runId": rid, "eventType": "report.sent",
             "timestamp": "2026-11-30T10:00:03.000000Z"},
            {"type": "run.end", "runId": rid, "status": "FAILED",
             "endedAt": "2026-11-30T10:00:04.500000Z"},
        ],
    )  # fmt: skip
    body = _page(api)
    assert [r["id"] for r in body["data"]] == [second["id"], rid]  # newest start first
    assert body["hasMore"] is False and body["nextCursor"] is None and body["count"] == 2
    run = body["data"][1]
    assert run["startedAt"] == "2026-11-30T10:00:00.000000Z"
    assert run["endedAt"] == "2026-11-30T10:00:04.500000Z" and run["durationMs"] == 4500
    assert run["status"] == "FAILED" and run["workflowName"] == "Alpha"
    assert run["eventCount"] == 3
    assert run["meters"] == [
        {"meter": "report.sent", "kind": "event", "events": 1, "quantity": "1"},
        {"meter": "tokens", "kind": "meter", "events": 2, "quantity": "0.3"},
    ]
    assert body["data"][0]["eventCount"] == 0 and body["data"][0]["durationMs"] is None

    def ids(**params: Any) -> list[str]:
        return [r["id"] for r in _page(api, **params)["data"]]

    assert ids(customerId=a) == [rid]
    assert ids(workflow="beta") == [second["id"]]  # by slug
    workflow_id = _page(api, customerId=b)["data"][0]["workflowId"]
    assert ids(workflow=workflow_id) == [second["id"]]  # by id
    assert ids(status="FAILED") == [rid] and ids(status="RUNNING") == [second["id"]]
    assert ids(since="2026-11-30T10:30:00Z") == [second["id"]]
    assert ids(until="2026-11-30T11:00:00Z") == [rid]  # half-open
    assert ids(since="2026-11-30", until="2026-12-01", customerId=b) == [second["id"]]


def test_bad_filters(api: httpx.Client) -> None:
    for params, status, code in (
        ({"customerId": "cus_nobody"}, 404, "CUSTOMER_NOT_FOUND"),
        ({"workflow": "nowhere"}, 404, "WORKFLOW_NOT_FOUND"),
        ({"cursor": "not-a-cursor"}, 422, "INVALID_CURSOR"),
        ({"since": "soon"}, 422, "VALIDATION_ERROR"),
        ({"status": "DONE"}, 422, "VALIDATION_ERROR"),
    ):
        response = api.get("/runs", params=params)
        assert response.status_code == status and response.json()["code"] == code, params


def test_paging_returns_every_run_once_while_runs_arrive(api: httpx.Client) -> None:
    customer = _customer(api, "runs-paging")
    # 45 runs over 15 distinct start times: ties are broken by insertion order
    original = [
        _start(customer, f"2026-11-30T10:{minute:02d}:00.000000Z")
        for minute in range(15)
        for _ in range(3)
    ]
    _ingest(api, original)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7, "customerId": customer}
        if cursor:
            params["cursor"] = cursor
        body = _page(api, **params)
        seen += [r["id"] for r in body["data"]]
        pages += 1
        # new runs keep arriving between pages: newer than everything, and older
        _ingest(
            api,
            [
                _start(customer, f"2026-11-30T11:{pages:02d}:00.000000Z"),
                _start(customer, f"2026-11-30T09:{pages:02d}:00.000000Z"),
                _start(customer, "2026-11-30T10:07:00.000000Z"),  # ties with a listed start
            ],
        )
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            assert cursor is None
            break
        assert len(body["data"]) == 7
    assert len(seen) == len(set(seen)), "a run was listed twice"
    assert {r["id"] for r in original} <= set(seen), "a run was skipped"
    starts = [r["startedAt"] for r in original]
    assert len(starts) == 45 and pages >= 7
