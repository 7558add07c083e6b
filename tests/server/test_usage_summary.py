"""GET /v1/usage/summary: windows, groupings and kinds against hand-computed totals.

The data set goes in through every write path (ingest, run events, recorded runs, tracked usage,
charges) with fixed timestamps, so whole hours come from the rollups and partial hours from the
rows; the totals below were worked out by hand, and a seeded sweep of random windows checks the
two sources against each other via a brute-force sum over the same data set.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from drip.server.storage import summary as storage_summary


def _customer(api: httpx.Client, external: str) -> str:
    response = api.post("/customers", json={"externalCustomerId": external})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# (customer, run, meter or None, event type, quantity, timestamp, model) for the run events;
# runs r1 (workflow "alpha", customer A) and r2 (workflow "beta", customer B)
EVENTS = [
    ("A", "r1", "tokens", "llm", 0.1, "2026-11-30T10:15:00.000000Z", "gpt-x"),
    ("A", "r1", "tokens", "llm", 0.2, "2026-11-30T10:45:00.000000Z", "gpt-y"),
    ("A", "r1", None, "report.sent", 1.0, "2026-11-30T11:05:00.000000Z", None),
    ("A", "r1", "tokens", "llm", 5.0, "2026-12-01T00:30:00.000000Z", None),
    ("B", "r2", "tokens", "llm", 2.5, "2026-11-30T23:59:59.999999Z", "gpt-x"),
]
# (customer, meter, quantity, timestamp, model): usage records outside runs
USAGE = [
    ("B", "tokens", 7.0, "2026-11-30T10:50:00.000000Z", "gpt-x"),
    ("A", "api_calls", 3.0, "2026-11-30T12:00:00.000000Z", None),
]


@pytest.fixture
def data(api: httpx.Client) -> dict[str, str]:
    ids = {"A": _customer(api, "summary-a"), "B": _customer(api, "summary-b")}
    items: list[dict[str, Any]] = [
        {"type": "run.start", "id": "r1", "customerId": ids["A"], "workflow": "alpha"},
        {"type": "run.start", "id": "r2", "customerId": ids["B"], "workflow": "beta"},
    ]
    for i, (_, run, meter, event_type, quantity, ts, model) in enumerate(EVENTS):
        item: dict[str, Any] = {
            "type": "event",
            "id": f"e{i}",
            "runId": run,
            "eventType": event_type,
            "quantity": quantity,
            "timestamp": ts,
        }
        if meter is not None:
            item["meter"] = meter
        if model is not None:
            item["metadata"] = {"model": model}
        items.append(item)
    # the last usage record goes through POST /usage/internal, the first through ingest
    customer, meter, quantity, ts, model = USAGE[0]
    items.append(
        {
            "type": "usage",
            "id": "u0",
            "customerId": ids[customer],
            "usageType": meter,
            "quantity": quantity,
            "timestamp": ts,
            "metadata": {"model": model},
        }
    )
    response = api.post("/ingest", json={"items": items})
    assert response.status_code == 200 and response.json()["created"] == len(items)
    # a repeat of the same batch is all duplicates and must not count twice
    assert api.post("/ingest", json={"items": items}).json()["duplicates"] == len(items)
    customer, meter, quantity, ts, _ = USAGE[1]
    response = api.post(
        "/usage/internal",
        json={
            "customerId": ids[customer],
            "usageType": meter,
            "quantity": quantity,
            "timestamp": ts,
            "idempotencyKey": "once",
        },
    )
    assert response.status_code == 200
    again = api.post(
        "/usage/internal",
        json={
            "customerId": ids[customer],
            "usageType": meter,
            "quantity": 3,
            "idempotencyKey": "once",
        },
    )
    assert again.json()["isDuplicate"] is True
    return ids


def summary(api: httpx.Client, **params: Any) -> dict[str, Any]:
    response = api.get("/usage/summary", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def meters(body: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(m["meter"], m["kind"]): m["quantityDecimal"] for m in body["meters"]}


def test_all_time_totals_are_exact_and_split_by_kind(
    api: httpx.Client, data: dict[str, str]
) -> None:
    body = summary(api)
    # 0.1 + 0.2 + 5 + 2.5 + 7 = 14.8 exactly (floats would drift)
    assert meters(body) == {
        ("api_calls", "meter"): "3",
        ("report.sent", "event"): "1",
        ("tokens", "meter"): "14.8",
    }
    tokens = next(m for m in body["meters"] if m["meter"] == "tokens")
    assert tokens["runEvents"] == 4 and tokens["usageRecords"] == 1 and tokens["quantity"] == 14.8
    assert body["groups"] == [] and body["groupBy"] == []
    # an empty groupBy is refused by name, not read as "no grouping" (schemathesis, ST201)
    empty = api.get("/usage/summary", params={"groupBy": ""})
    assert empty.status_code == 422 and "groupBy: empty" in empty.text


def test_windows_whole_and_partial_hours(api: httpx.Client, data: dict[str, str]) -> None:
    # the whole hour 10:00-11:00 (rollups only): 0.1 + 0.2 + 7
    assert meters(summary(api, since="2026-11-30T10:00:00Z", until="2026-11-30T11:00:00Z")) == {
        ("tokens", "meter"): "7.3"
    }
    # inside one hour (rows only): 0.2 + 7
    assert meters(summary(api, since="2026-11-30T10:30:00Z", until="2026-11-30T11:00:00Z")) == {
        ("tokens", "meter"): "7.2"
    }
    # partial first hour, whole hours, partial last hour: 0.2 + 7 + 2.5 + 5, report 1, calls 3
    body = summary(api, since="2026-11-30T10:20:00+00:00", until="2026-12-01T00:40:00Z")
    assert meters(body) == {
        ("api_calls", "meter"): "3",
        ("report.sent", "event"): "1",
        ("tokens", "meter"): "14.7",
    }
    assert body["since"] == "2026-11-30T10:20:00.000000Z"
    # half-open: an event exactly at `until` is out, one exactly at `since` is in
    assert meters(summary(api, since="2026-11-30T10:15:00Z", until="2026-11-30T10:45:00Z")) == {
        ("tokens", "meter"): "0.1"
    }
    # a date is midnight UTC
    assert meters(summary(api, since="2026-12-01")) == {("tokens", "meter"): "5"}


def test_customer_and_meter_filters(api: httpx.Client, data: dict[str, str]) -> None:
    a = summary(api, customerId=data["A"])
    assert meters(a) == {
        ("api_calls", "meter"): "3",
        ("report.sent", "event"): "1",
        ("tokens", "meter"): "5.3",
    }
    assert a["customerId"] == data["A"]
    b = summary(api, customerId=data["B"], meter="tokens", until="2026-11-30T23:00:00Z")
    assert meters(b) == {("tokens", "meter"): "7"}


def _groups(body: dict[str, Any], *dims: str) -> dict[tuple[Any, ...], str]:
    return {(g["kind"], *(g[d] for d in dims)): g["quantity"] for g in body["groups"]}


def test_group_by(api: httpx.Client, data: dict[str, str]) -> None:
    a, b = data["A"], data["B"]
    body = summary(api, groupBy="customer,meter")
    assert body["groupBy"] == ["customer", "meter"]
    assert _groups(body, "customerId", "meter") == {
        ("meter", a, "api_calls"): "3",
        ("event", a, "report.sent"): "1",
        ("meter", a, "tokens"): "5.3",
        ("meter", b, "tokens"): "9.5",
    }
    by_model = summary(api, groupBy="model", meter="tokens")
    assert _groups(by_model, "model") == {
        ("meter", "gpt-x"): "9.6",
        ("meter", "gpt-y"): "0.2",
        ("meter", None): "5",
    }
    by_workflow = summary(api, groupBy=["workflow", "meter"], meter="tokens")
    workflows = {w["slug"]: w["id"] for w in api.get("/workflows").json()["data"]}
    assert _groups(by_workflow, "workflowId") == {
        ("meter", workflows["alpha"]): "5.3",
        ("meter", workflows["beta"]): "2.5",
        ("meter", None): "7",
    }
    by_day = summary(api, groupBy="day", meter="tokens", since="2026-11-30T10:20:00Z")
    assert _groups(by_day, "day") == {("meter", "2026-11-30"): "9.7", ("meter", "2026-12-01"): "5"}
    by_hour = summary(api, groupBy="hour", customerId=a, until="2026-11-30T12:00:00Z")
    assert _groups(by_hour, "hour") == {
        ("meter", "2026-11-30T10:00:00Z"): "0.3",
        ("event", "2026-11-30T11:00:00Z"): "1",
    }


def test_bad_parameters(api: httpx.Client, data: dict[str, str]) -> None:
    for params, field in (
        ({"groupBy": "planet"}, "groupBy"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "until"),
    ):
        response = api.get("/usage/summary", params=params)
        assert response.status_code == 422, params
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert response.json()["message"].startswith(f"{field}:")
    missing = api.get("/usage/summary", params={"customerId": "cus_nobody"})
    assert missing.status_code == 404 and missing.json()["code"] == "CUSTOMER_NOT_FOUND"


def _expected(since: str | None, until: str | None) -> dict[tuple[str, str], str]:
    totals: dict[tuple[str, str], Decimal] = {}
    rows = [(m or t, "meter" if m else "event", q, ts) for _, _, m, t, q, ts, _ in EVENTS]
    rows += [(m, "meter", q, ts) for _, m, q, ts, _ in USAGE]
    for name, kind, quantity, ts in rows:
        if (since is None or ts >= since) and (until is None or ts < until):
            key = (name, kind)
            totals[key] = totals.get(key, Decimal(0)) + Decimal(repr(quantity))
    return {k: format(v.normalize(), "f") for k, v in totals.items()}


def test_random_windows_match_a_brute_force_sum(api: httpx.Client, data: dict[str, str]) -> None:
    rng = random.Random(7)
    base = datetime(2026, 11, 30, 9, tzinfo=timezone.utc)
    marks = [base + timedelta(minutes=rng.randrange(0, 17 * 60)) for _ in range(30)]
    marks += [base + timedelta(hours=h) for h in range(0, 17, 3)]  # some on the hour
    for _ in range(25):
        lo, hi = sorted(rng.sample(marks, 2))
        since = lo.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        until = hi.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert meters(summary(api, since=since, until=until)) == _expected(since, until), (
            since,
            until,
        )


def test_edge_hours_read_either_way_give_the_same_summary(
    api: httpx.Client, data: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partial hour at a window's edge is read from its own rows, or from its hour's rollups
    less the rows of the rest of the hour, whichever part is shorter: both are exact, so
    every summary (totals, counts, groups) is the same either way."""
    rng = random.Random(11)
    base = datetime(2026, 11, 30, 9, tzinfo=timezone.utc)
    marks = [base + timedelta(seconds=rng.randrange(0, 17 * 3600)) for _ in range(16)]
    marks += [base + timedelta(hours=1, minutes=1), base + timedelta(hours=2, minutes=59)]
    queries: list[dict[str, Any]] = []
    for group_by in ("", "meter,day", "customer,hour", "workflow,model"):
        for _ in range(6):
            lo, hi = sorted(rng.sample(marks, 2))
            query = {
                "since": lo.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "until": hi.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            if group_by:
                query["groupBy"] = group_by
            queries.append(query)
    queries.append({"since": "2026-11-30T10:01:00Z", "customerId": data["A"]})
    queries.append({"until": "2026-11-30T12:59:00Z", "groupBy": "meter", "meter": "tokens"})
    signs: list[int] = []
    from_rows = storage_summary._from_rows

    def spy(*args: Any, sign: int = 1) -> None:
        signs.append(sign)
        from_rows(*args, sign=sign)

    monkeypatch.setattr(storage_summary, "_from_rows", spy)
    either = [summary(api, **query) for query in queries]
    assert signs.count(-1) >= 5 and signs.count(1) >= 5  # both ways were taken
    monkeypatch.setattr(storage_summary, "_from_rows", from_rows)

    def rows_only(lo: Any, hi: Any, edges: Any) -> tuple[Any, Any, Any, list[Any]]:
        return lo, hi, edges, []

    monkeypatch.setattr(storage_summary, "_cheaper_edges", rows_only)
    rows = [summary(api, **query) for query in queries]
    assert either == rows
    assert sum(len(body["meters"]) + len(body["groups"]) for body in rows) > 50


def test_the_ends_of_the_calendar(api: httpx.Client, customer_id: str) -> None:
    """Years 1 and 9999 and years before 1000: stored with four digits (as text they sort in
    time order), counted in their windows, and a moment past year 9999 (or before year 1) once
    in UTC is a rejected item or a 422, never a 500."""
    stamps = {
        "y1": ("0001-01-01T00:00:00Z", 1),
        "y999": ("0999-06-01T10:30:00+00:00", 2),
        "y2026": ("2026-01-01T00:00:00Z", 4),
        "last": ("9999-12-31T23:30:00Z", 8),
    }
    items = [
        {"type": "usage", "id": f"use_{name}", "customerId": customer_id, "usageType": "t",
         "quantity": quantity, "timestamp": ts}
        for name, (ts, quantity) in stamps.items()
    ]  # fmt: skip
    beyond = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"]
    items += [{**items[0], "id": f"use_beyond{i}", "timestamp": ts} for i, ts in enumerate(beyond)]
    body = api.post("/ingest", json={"items": items}).json()
    assert [r["status"] for r in body["results"]] == ["created"] * 4 + ["rejected"] * 2
    assert {r["code"] for r in body["results"][4:]} == {"INVALID_TIMESTAMP"}
    assert "outside years 1-9999" in body["results"][4]["message"]

    def total(**params: Any) -> str | None:
        found = meters(summary(api, customerId=customer_id, **params))
        return found.get(("t", "meter"))

    assert total() == "15"
    assert total(since="2000-01-01") == "12"
    assert total(since="0001-01-01", until="1971-01-01") == "3"
    assert total(since="0999-06-01T10:00:00+00:00", until="0999-06-01T11:00:00Z") == "2"
    assert total(since="2026-06-01", until="9999-12-31T23:59:59.999999Z") == "8"
    assert total(since="9999-12-31T23:10:00Z") == "8"
    assert total(since="9999-12-31T23:40:00Z") is None
    assert total(until="9999-12-31T23:30:00Z") == "7"
    by_day = summary(api, customerId=customer_id, groupBy="day")["groups"]
    assert [g["day"] for g in by_day] == ["0001-01-01", "0999-06-01", "2026-01-01", "9999-12-31"]
    for params in ({"since": beyond[0]}, {"until": beyond[1]}):
        response = api.get("/usage/summary", params=params)
        assert response.status_code == 422 and "outside years 1-9999" in response.text
        assert api.get("/runs", params=params).status_code == 422
