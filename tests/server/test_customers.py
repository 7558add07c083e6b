"""Customers and workflows."""

from __future__ import annotations

import httpx

CUSTOMER_KEYS = {
    "id",
    "createdAt",
    "updatedAt",
    "businessId",
    "externalCustomerId",
    "onchainAddress",
    "isInternal",
    "status",
    "metadata",
}


def test_create_and_get(api: httpx.Client) -> None:
    created = api.post(
        "/customers",
        json={"externalCustomerId": "u1", "isInternal": True, "metadata": {"plan": "pro"}},
    )
    assert created.status_code == 201
    body = created.json()
    assert body.keys() >= CUSTOMER_KEYS
    assert (
        body["id"].startswith("cus_") and body["status"] == "ACTIVE" and body["isInternal"] is True
    )
    assert body["createdAt"].endswith("Z")
    fetched = api.get(f"/customers/{body['id']}").json()
    assert fetched["metadata"] == {"plan": "pro"} and fetched["externalCustomerId"] == "u1"


def test_duplicate_external_id_is_409_with_existing_id(api: httpx.Client) -> None:
    first = api.post("/customers", json={"externalCustomerId": "dup"}).json()
    again = api.post("/customers", json={"externalCustomerId": "dup"})
    assert again.status_code == 409
    body = again.json()
    assert body["existingCustomerId"] == first["id"] and body["code"] == "CUSTOMER_ALREADY_EXISTS"
    assert isinstance(body["message"], str) and isinstance(body["error"], str)


def test_duplicate_onchain_address_is_409(api: httpx.Client) -> None:
    first = api.post("/customers", json={"onchainAddress": "0xabc"}).json()
    again = api.post("/customers", json={"onchainAddress": "0xabc", "externalCustomerId": "new"})
    assert again.status_code == 409 and again.json()["existingCustomerId"] == first["id"]


def test_return_existing_answers_the_same_identity(api: httpx.Client) -> None:
    first = api.post(
        "/customers", json={"externalCustomerId": "re", "onchainAddress": "0x1"}
    ).json()
    again = api.post("/customers", json={"externalCustomerId": "re", "returnExisting": True})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["isDuplicate"] is True
    clash = api.post(
        "/customers",
        json={"externalCustomerId": "re", "onchainAddress": "0x2", "returnExisting": True},
    )
    assert clash.status_code == 409 and clash.json()["existingCustomerId"] == first["id"]


def test_identity_is_required(api: httpx.Client) -> None:
    response = api.post("/customers", json={"isInternal": True})
    assert response.status_code == 422 and response.json()["code"] == "VALIDATION_ERROR"
    assert api.get("/customers").json()["count"] == 0


def test_list_paging_and_status(api: httpx.Client) -> None:
    ids = [
        api.post("/customers", json={"externalCustomerId": f"c{i}"}).json()["id"] for i in range(5)
    ]
    page = api.get("/customers", params={"limit": 2, "offset": 1}).json()
    assert [c["id"] for c in page["data"]] == ids[1:3] and page["count"] == 5
    assert api.get("/customers", params={"status": "ACTIVE"}).json()["count"] == 5
    paused = api.get("/customers", params={"status": "PAUSED"}).json()
    assert paused == {"data": [], "count": 0, "nextCursor": None, "hasMore": False}
    assert api.get("/customers", params={"limit": 0}).status_code == 422


def test_workflows_are_idempotent_on_slug(api: httpx.Client) -> None:
    made = api.post(
        "/workflows",
        json={"name": "Research Agent", "slug": "research-agent", "productSurface": "AGENT"},
    )
    assert made.status_code == 201
    again = api.post("/workflows", json={"name": "Other name", "slug": "research-agent"})
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    assert again.json()["name"] == "Research Agent"
    listed = api.get("/workflows").json()
    assert listed["count"] == 1
    wf = listed["data"][0]
    assert {"id", "name", "slug", "productSurface", "isActive", "createdAt"} <= wf.keys()
    assert wf["productSurface"] == "AGENT" and wf["isActive"] is True


def test_workflow_list_is_unpaginated(api: httpx.Client) -> None:
    for i in range(120):
        api.post("/workflows", json={"name": f"W{i}", "slug": f"w-{i}"})
    assert api.get("/workflows").json()["count"] == 120
