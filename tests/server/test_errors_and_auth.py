"""Health, authentication, key scopes and the JSON error shape for every kind of bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drip.server.http import MAX_BODY_BYTES


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"]
    assert body["code"] == code
    return body


def test_health_needs_no_key(account: Any) -> None:
    response = httpx.get(f"{account.base_url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and isinstance(body["timestamp"], int)
    assert body["timestamp"] > 1_600_000_000  # seconds, not milliseconds
    assert body["timestamp"] < 10_000_000_000


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer xx_1234567890"},
    ],
)
def test_missing_or_malformed_key_is_401(account: Any, headers: dict[str, str]) -> None:
    response = httpx.get(f"{account.base_url}/v1/customers", headers=headers)
    assert_error(response, 401, "UNAUTHORIZED")


def test_unknown_key_is_401(account: Any) -> None:
    response = httpx.get(
        f"{account.base_url}/v1/customers",
        headers={"Authorization": "Bearer sk_local_" + "0" * 48},
    )
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


def test_public_key_scope(public_api: httpx.Client, api: httpx.Client) -> None:
    created = public_api.post("/customers", json={"externalCustomerId": "p1"})
    assert created.status_code == 201
    cid = created.json()["id"]
    assert (
        public_api.post(
            "/usage/internal", json={"customerId": cid, "usageType": "m", "quantity": 1}
        ).status_code
        == 200
    )
    assert (
        public_api.post(
            "/usage", json={"customerId": cid, "usageType": "m", "quantity": 1}
        ).status_code
        == 200
    )
    assert public_api.get("/workflows").status_code == 200
    run = public_api.post("/runs", json={"customerId": cid, "workflowId": "w"})
    assert run.status_code == 201
    assert public_api.post("/ingest", json={"items": []}).status_code == 200
    # find or create a workflow by slug (the published run() does): an existing one unchanged
    made = public_api.post("/workflows", json={"name": "W", "slug": "w2"})
    assert made.status_code == 201 and made.json()["name"] == "W"
    found = public_api.post("/workflows", json={"name": "Renamed", "slug": "w2"})
    assert found.status_code == 200 and found.json() == made.json()
    # secret only
    assert_error(public_api.get("/usage/summary"), 403, "SECRET_KEY_REQUIRED")
    assert api.get("/usage/summary").status_code == 200


def test_unknown_route_and_method(api: httpx.Client) -> None:
    assert_error(api.get("/nothing-here"), 404, "NOT_FOUND")
    assert_error(api.delete("/customers"), 405, "METHOD_NOT_ALLOWED")


def test_malformed_json_is_400(api: httpx.Client) -> None:
    response = api.post(
        "/customers",
        content=b'{"externalCustomerId": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "INVALID_JSON")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42"])
def test_body_that_is_not_an_object_is_422(api: httpx.Client, body: bytes) -> None:
    response = api.post("/customers", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "VALIDATION_ERROR")


def test_wrong_types_name_the_field(api: httpx.Client, customer_id: str) -> None:
    body = assert_error(
        api.post(
            "/usage/internal",
            json={"customerId": customer_id, "usageType": "m", "quantity": "lots"},
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert "quantity" in body["message"]
    body = assert_error(
        api.post(
            "/usage/internal", json={"customerId": customer_id, "usageType": "m", "quantity": True}
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert "quantity" in body["message"]
    body = assert_error(api.post("/runs", json={"customerId": 5}), 422, "VALIDATION_ERROR")
    assert "customerId" in body["message"] and "workflowId" in body["message"]
    body = assert_error(api.get("/customers", params={"limit": "many"}), 422, "VALIDATION_ERROR")
    assert "limit" in body["message"]
    body = assert_error(api.get("/customers", params={"status": "ASLEEP"}), 422, "VALIDATION_ERROR")
    assert "status" in body["message"]


def test_oversize_body_is_413_by_content_length(api: httpx.Client) -> None:
    body = b'{"items": ["' + b"x" * (MAX_BODY_BYTES + 10) + b'"]}'
    response = api.post("/ingest", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_oversize_body_is_413_while_streaming(api: httpx.Client) -> None:
    def chunks() -> Any:
        piece = b" " * (1024 * 1024)
        for _ in range(MAX_BODY_BYTES // len(piece) + 2):
            yield piece

    response = api.post("/ingest", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_empty_json_body_where_none_is_needed(api: httpx.Client) -> None:
    # the published client sends Content-Type: application/json on every request, GETs too
    response = api.get("/customers", headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["count"] == 0
    assert api.get("/workflows", headers={"Content-Type": "application/json"}).status_code == 200


def test_empty_body_where_one_is_needed_is_422(api: httpx.Client) -> None:
    response = api.post("/customers", content=b"", headers={"Content-Type": "application/json"})
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert "external_customer_id" in body["message"] or "externalCustomerId" in body["message"]


def test_unknown_ids_in_the_path_are_404(api: httpx.Client) -> None:
    assert_error(api.get("/customers/cus_nope"), 404, "CUSTOMER_NOT_FOUND")
    assert_error(api.get("/runs/run_nope"), 404, "RUN_NOT_FOUND")
    assert_error(api.get("/runs/run_nope/timeline"), 404, "RUN_NOT_FOUND")
    assert_error(api.patch("/runs/run_nope", json={"status": "COMPLETED"}), 404, "RUN_NOT_FOUND")


def test_other_accounts_ids_are_404(api: httpx.Client, live_server: Any, account: Any) -> None:
    other_key = live_server.create_key(f"{account.name}-other")
    with httpx.Client(
        base_url=f"{account.base_url}/v1", headers={"Authorization": f"Bearer {other_key}"}
    ) as other:
        cid = other.post("/customers", json={"externalCustomerId": "same-name"}).json()["id"]
        run = other.post("/runs", json={"customerId": cid, "workflowId": "w"}).json()
    assert_error(api.get(f"/customers/{cid}"), 404, "CUSTOMER_NOT_FOUND")
    assert_error(api.get(f"/runs/{run['id']}"), 404, "RUN_NOT_FOUND")
    assert_error(api.patch(f"/runs/{run['id']}", json={"status": "FAILED"}), 404, "RUN_NOT_FOUND")
    body = assert_error(
        api.post("/usage/internal", json={"customerId": cid, "usageType": "m", "quantity": 1}),
        422,
        "CUSTOMER_NOT_FOUND",
    )
    assert "customerId" in body["message"]
    assert api.get("/customers").json()["count"] == 0
    # the same external id is free in this account
    assert api.post("/customers", json={"externalCustomerId": "same-name"}).status_code == 201


def test_health_checks_a_key_when_one_is_sent(account: Any) -> None:
    import httpx

    import drip
    from drip.errors import DripAuthenticationError

    assert httpx.get(f"{account.base_url}/health").json()["status"] == "healthy"
    with drip.Drip(api_key=account.secret_key, base_url=account.base_url) as client:
        assert client.ping().ok
    bad = "sk_local_" + "0" * 48
    answer = httpx.get(f"{account.base_url}/health", headers={"Authorization": f"Bearer {bad}"})
    assert answer.status_code == 401
    with (
        drip.Drip(api_key=bad, base_url=account.base_url) as client,
        pytest.raises(DripAuthenticationError, match="does not know"),
    ):
        client.ping()
