"""Tracked usage, charges, idempotency and the per-meter summary."""

from __future__ import annotations

import httpx

TRACK_KEYS = {
    "success",
    "usageEventId",
    "customerId",
    "usageType",
    "quantity",
    "isInternal",
    "message",
}


def test_track_usage(api: httpx.Client, customer_id: str) -> None:
    response = api.post(
        "/usage/internal",
        json={
            "customerId": customer_id,
            "usageType": "llm_tokens",
            "quantity": 842,
            "metadata": {"model": "m"},
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body.keys() >= TRACK_KEYS
    assert body["success"] is True and body["quantity"] == 842 and body["isDuplicate"] is False


def test_same_key_returns_the_first_result(api: httpx.Client, customer_id: str) -> None:
    first = api.post(
        "/usage/internal",
        json={"customerId": customer_id, "usageType": "m", "quantity": 2, "idempotencyKey": "k1"},
    ).json()
    again = api.post(
        "/usage/internal",
        json={"customerId": customer_id, "usageType": "m", "quantity": 99, "idempotencyKey": "k1"},
    )
    assert again.status_code == 200
    assert again.json()["isDuplicate"] is True
    assert again.json()["usageEventId"] == first["usageEventId"] and again.json()["quantity"] == 2
    # no key: never deduplicated on content
    for _ in range(2):
        api.post(
            "/usage/internal", json={"customerId": customer_id, "usageType": "m", "quantity": 1}
        )
    assert api.get("/usage/summary", params={"meter": "m"}).json()["meters"][0]["quantity"] == 4


def test_batch_mode_is_202(api: httpx.Client, customer_id: str) -> None:
    response = api.post(
        "/usage/internal/batch", json={"customerId": customer_id, "usageType": "m", "quantity": 3}
    )
    assert response.status_code == 202
    body = response.json()
    assert body["idempotencyKey"] and body["pendingEvents"] == 0 and body["success"] is True
    again = api.post(
        "/usage/internal/batch",
        json={
            "customerId": customer_id,
            "usageType": "m",
            "quantity": 3,
            "idempotencyKey": body["idempotencyKey"],
        },
    )
    assert again.status_code == 202
    assert api.get("/usage/summary").json()["meters"][0]["usageRecords"] == 1


def test_usage_and_charge_keys_are_separate_families(api: httpx.Client, customer_id: str) -> None:
    body = {
        "customerId": customer_id,
        "usageType": "api_calls",
        "quantity": 1,
        "idempotencyKey": "same",
    }
    assert api.post("/usage/internal", json=body).json()["isDuplicate"] is False
    assert api.post("/usage", json=body).json()["isDuplicate"] is False


def test_charge_is_priced_and_idempotent(api: httpx.Client, customer_id: str) -> None:
    # the live server prices api_calls at 0.001 USDC
    body = {
        "customerId": customer_id,
        "usageType": "api_calls",
        "quantity": 3,
        "idempotencyKey": "c1",
    }
    first = api.post("/usage", json=body)
    assert first.status_code == 200
    charged = first.json()
    assert charged["success"] is True and charged["isDuplicate"] is False
    assert (
        charged["charge"]["amountUsdc"] == "0.003000" and charged["charge"]["status"] == "CONFIRMED"
    )
    assert charged["charge"]["id"].startswith("chg_")
    again = api.post("/usage", json=body).json()
    assert again["isDuplicate"] is True and again["charge"]["id"] == charged["charge"]["id"]
    assert again["usageEventId"] == charged["usageEventId"]
    free = api.post(
        "/usage", json={"customerId": customer_id, "usageType": "other", "quantity": 5}
    ).json()
    assert free["charge"]["amountUsdc"] == "0.000000"
    assert (
        api.post(
            "/usage", json={"customerId": customer_id, "usageType": "x", "quantity": -1}
        ).status_code
        == 422
    )


def test_unknown_customer_is_422(api: httpx.Client) -> None:
    response = api.post("/usage", json={"customerId": "cus_x", "usageType": "m", "quantity": 1})
    assert response.status_code == 422 and response.json()["code"] == "CUSTOMER_NOT_FOUND"


def test_summary_sums_usage_charges_and_run_events(api: httpx.Client, customer_id: str) -> None:
    other = api.post("/customers", json={"externalCustomerId": "someone-else"}).json()["id"]
    api.post(
        "/usage/internal", json={"customerId": customer_id, "usageType": "tokens", "quantity": 100}
    )
    api.post("/usage", json={"customerId": customer_id, "usageType": "tokens", "quantity": 20})
    api.post("/usage", json={"customerId": customer_id, "usageType": "api_calls", "quantity": 2})
    run = api.post("/runs", json={"customerId": customer_id, "workflowId": "agent"}).json()
    api.post(
        "/run-events",
        json={"runId": run["id"], "eventType": "llm.call", "meter": "tokens", "quantity": 3},
    )
    api.post("/run-events", json={"runId": run["id"], "eventType": "tool.call"})
    api.post("/usage/internal", json={"customerId": other, "usageType": "tokens", "quantity": 1000})

    summary = api.get("/usage/summary", params={"customerId": customer_id}).json()
    assert summary["customerId"] == customer_id
    meters = {m["meter"]: m for m in summary["meters"]}
    assert meters["tokens"]["quantity"] == 123
    assert (
        meters["tokens"]["usageRecords"],
        meters["tokens"]["charges"],
        meters["tokens"]["runEvents"],
    ) == (1, 1, 1)
    assert meters["tool.call"]["quantity"] == 1 and meters["tool.call"]["runEvents"] == 1
    assert meters["api_calls"]["amountUsdc"] == "0.002000"
    one = api.get("/usage/summary", params={"customerId": customer_id, "meter": "tokens"}).json()
    assert [m["meter"] for m in one["meters"]] == ["tokens"]
    everyone = api.get("/usage/summary", params={"meter": "tokens"}).json()
    assert everyone["meters"][0]["quantity"] == 1123
    assert api.get("/usage/summary", params={"customerId": "cus_nobody"}).status_code == 404


def test_records_without_a_key_are_never_duplicates_of_another_customers(
    api: httpx.Client,
) -> None:
    """The PostgreSQL regression of issue 7: a driver row count of -1 made every first record
    a "duplicate" and answered a keyless one with an older record of another customer."""
    ids = [
        api.post("/customers", json={"externalCustomerId": f"keyless-{n}"}).json()["id"]
        for n in range(2)
    ]
    for path in ("/usage/internal", "/usage"):
        for customer in ids:
            body = {"customerId": customer, "usageType": "api_calls", "quantity": 2}
            answer = api.post(path, json=body).json()
            assert answer["isDuplicate"] is False, answer
            if path == "/usage/internal":
                assert answer["customerId"] == customer, answer
    keyed = {"customerId": ids[0], "usageType": "api_calls", "quantity": 1, "idempotencyKey": "k"}
    assert api.post("/usage", json=keyed).json()["isDuplicate"] is False
    assert api.post("/usage", json=keyed).json()["isDuplicate"] is True
