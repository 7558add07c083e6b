"""The scope table (``drip.server.scopes``) against every route of the app, called with the
account's secret key, its public key, another account's key and no key.

The route list comes from the app itself: a new route without an entry in the table (or an
entry for a route that is gone) fails ``test_the_table_names_every_route``, and every route
needs a request below, or ``test_every_route_has_a_request_here`` fails.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from drip.server import create_app
from drip.server.scopes import NONE, SCOPES, SECRET, required

DOCS = Path(__file__).parents[2] / "docs" / "scopes.md"


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI >= 0.16x keeps an included router as one entry
            yield from _walk(included.routes, prefix + route.include_context.prefix)
            continue
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                yield method, prefix + route.path_format


def _app_routes() -> set[tuple[str, str]]:
    app = create_app("sqlite://")
    found = set(_walk(app.routes))
    app.state.drip.db.dispose()
    assert ("GET", "/v1/customers") in found  # the walk sees into included routers
    return found


def test_the_table_names_every_route() -> None:
    routes = _app_routes()
    assert routes - set(SCOPES) == set(), "routes without a scope entry"
    assert set(SCOPES) - routes == set(), "scope entries for routes that do not exist"


def test_a_route_missing_from_the_table_needs_a_secret_key() -> None:
    assert required("GET", "/v1/something-new") == SECRET


def test_the_docs_show_the_table() -> None:
    text = DOCS.read_text()
    for (method, path), (scope, _) in SCOPES.items():
        assert f"| `{method} {path}` | {scope} |" in text, (method, path)


@dataclass
class World:
    """The account's objects, made with its secret key, and a client per caller."""

    base: str
    customer_id: str
    run_id: str  # started by the secret key
    own_run_id: str  # started by the public key
    keys: dict[str, str | None]


@pytest.fixture
def world(account: Any, live_server: Any) -> Iterator[World]:
    other = live_server.create_key(f"other-{uuid.uuid4().hex[:8]}")
    base = f"{account.base_url}"
    sk = {"Authorization": f"Bearer {account.secret_key}"}
    pk = {"Authorization": f"Bearer {account.public_key}"}
    with httpx.Client(base_url=f"{base}/v1", timeout=30) as api:
        customer_id = api.post(
            "/customers", json={"externalCustomerId": "scoped"}, headers=sk
        ).json()["id"]
        run = {"customerId": customer_id, "workflowId": "wf-scopes"}
        run_id = api.post("/runs", json=run, headers=sk).json()["id"]
        own_run_id = api.post("/runs", json=run, headers=pk).json()["id"]
    yield World(
        base=base,
        customer_id=customer_id,
        run_id=run_id,
        own_run_id=own_run_id,
        keys={
            "secret": account.secret_key,
            "public": account.public_key,
            "other": other,
            "none": None,
        },
    )


Request = Callable[[World, str], tuple[str, dict[str, Any] | None]]


def _end(world: World, caller: str) -> tuple[str, dict[str, Any] | None]:
    # the public key ends its own run; the others try the secret key's run
    run_id = world.own_run_id if caller == "public" else world.run_id
    return f"/v1/runs/{run_id}", {"status": "COMPLETED"}


def _usage(world: World, caller: str) -> tuple[str, dict[str, Any] | None]:
    return "", {"customerId": world.customer_id, "usageType": "api_calls", "quantity": 1}


#: (method, path) -> the request each caller sends: (concrete path, JSON body)
REQUESTS: dict[tuple[str, str], Request] = {
    ("GET", "/health"): lambda w, c: ("/health", None),
    ("GET", "/"): lambda w, c: ("/", None),
    ("GET", "/assets/{name}"): lambda w, c: ("/assets/app.js", None),
    ("GET", "/docs"): lambda w, c: ("/docs", None),
    ("GET", "/openapi.json"): lambda w, c: ("/openapi.json", None),
    ("POST", "/v1/customers"): lambda w, c: (
        "/v1/customers",
        {"externalCustomerId": f"new-{uuid.uuid4().hex[:8]}"},
    ),
    ("GET", "/v1/customers"): lambda w, c: ("/v1/customers", None),
    ("GET", "/v1/customers/{customer_id}"): lambda w, c: (f"/v1/customers/{w.customer_id}", None),
    ("GET", "/v1/workflows"): lambda w, c: ("/v1/workflows", None),
    ("POST", "/v1/workflows"): lambda w, c: ("/v1/workflows", {"name": "W", "slug": "w-scope"}),
    ("POST", "/v1/usage/internal"): lambda w, c: ("/v1/usage/internal", _usage(w, c)[1]),
    ("POST", "/v1/usage/internal/batch"): lambda w, c: (
        "/v1/usage/internal/batch",
        _usage(w, c)[1],
    ),
    ("POST", "/v1/usage"): lambda w, c: ("/v1/usage", _usage(w, c)[1]),
    ("GET", "/v1/usage/summary"): lambda w, c: (
        f"/v1/usage/summary?customerId={w.customer_id}",
        None,
    ),
    ("POST", "/v1/runs"): lambda w, c: (
        "/v1/runs",
        {"customerId": w.customer_id, "workflowId": "wf-scopes"},
    ),
    ("GET", "/v1/runs"): lambda w, c: ("/v1/runs", None),
    ("POST", "/v1/runs/record"): lambda w, c: (
        "/v1/runs/record",
        {"customerId": w.customer_id, "workflow": "wf-scopes", "events": []},
    ),
    ("PATCH", "/v1/runs/{run_id}"): _end,
    ("GET", "/v1/runs/{run_id}"): lambda w, c: (f"/v1/runs/{w.run_id}", None),
    ("GET", "/v1/runs/{run_id}/timeline"): lambda w, c: (f"/v1/runs/{w.run_id}/timeline", None),
    ("POST", "/v1/run-events"): lambda w, c: (
        "/v1/run-events",
        {"runId": w.run_id, "eventType": "llm"},
    ),
    ("POST", "/v1/run-events/batch"): lambda w, c: (
        "/v1/run-events/batch",
        {"events": [{"runId": w.run_id, "eventType": "llm"}]},
    ),
    ("POST", "/v1/ingest"): lambda w, c: (
        "/v1/ingest",
        {"items": [{"type": "event", "runId": w.run_id, "eventType": "llm"}]},
    ),
}


def test_every_route_has_a_request_here() -> None:
    assert set(REQUESTS) == set(SCOPES)


def _call(world: World, caller: str, method: str, template: str) -> httpx.Response:
    path, body = REQUESTS[(method, template)](world, caller)
    key = world.keys[caller]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, world.base + path, json=body, headers=headers, timeout=30)


def _names_ours(world: World, text: str) -> bool:
    return world.customer_id in text or world.run_id in text


@pytest.mark.parametrize(("method", "template"), sorted(SCOPES))
def test_route_against_the_scope_table(world: World, method: str, template: str) -> None:
    scope = SCOPES[(method, template)][0]
    secret = _call(world, "secret", method, template)
    assert secret.status_code < 300, secret.text

    public = _call(world, "public", method, template)
    if scope == SECRET:
        assert public.status_code == 403, public.text
        assert public.json()["code"] == "SECRET_KEY_REQUIRED"
    else:
        assert public.status_code < 300, public.text

    nobody = _call(world, "none", method, template)
    if scope == NONE:
        assert nobody.status_code == 200, nobody.text
    else:
        assert nobody.status_code == 401, nobody.text
        assert nobody.json()["code"] == "UNAUTHORIZED"

    # another account's key: allowed in, but this account's objects do not exist for it
    other = _call(world, "other", method, template)
    assert other.status_code < 500, other.text
    if scope == NONE:
        return
    path, body = REQUESTS[(method, template)](world, "other")
    if _names_ours(world, path):
        assert other.status_code == 404, other.text
    elif _names_ours(world, json.dumps(body)):
        # a write naming this account's customer or run: refused, or the item rejected
        rejected = other.status_code == 422 or any(
            r.get("status") == "rejected" or r.get("skipped")
            for r in other.json().get("results", other.json().get("events", []))
        )
        assert rejected, other.text
    else:
        assert other.status_code < 300, other.text
        assert not _names_ours(world, other.text), other.text


def test_a_public_key_cannot_end_a_run_it_did_not_start(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.keys['public']}"}
    with httpx.Client(base_url=f"{world.base}/v1", headers=headers, timeout=30) as api:
        refused = api.patch(f"/runs/{world.run_id}", json={"status": "COMPLETED"})
        assert refused.status_code == 403
        assert refused.json()["code"] == "RUN_NOT_OWNED"
        batch = api.post(
            "/ingest",
            json={"items": [{"type": "run.end", "runId": world.run_id, "status": "FAILED"}]},
        ).json()
        assert batch["results"][0]["status"] == "rejected"
        assert batch["results"][0]["code"] == "RUN_NOT_OWNED"
        # its own run, started and ended through the SDK's batch endpoint
        own = f"run_{uuid.uuid4().hex}"
        items = [
            {"type": "run.start", "id": own, "customerId": world.customer_id, "workflow": "w"},
            {"type": "run.end", "runId": own, "status": "COMPLETED"},
        ]
        statuses = [
            r["status"] for r in api.post("/ingest", json={"items": items}).json()["results"]
        ]
        assert statuses == ["created", "updated"]
    secret = {"Authorization": f"Bearer {world.keys['secret']}"}
    run = httpx.get(f"{world.base}/v1/runs/{world.run_id}", headers=secret).json()
    assert run["status"] == "RUNNING"  # the refused ends changed nothing


def test_public_keys_read_nothing_of_the_customers() -> None:
    """The policy itself: every read under /v1 except the workflow list needs a secret key."""
    reads = {
        (method, path)
        for method, path in SCOPES
        if method == "GET" and path.startswith("/v1/") and path != "/v1/workflows"
    }
    assert reads and all(SCOPES[r][0] == SECRET for r in reads)


def test_a_public_key_repeating_a_customer_learns_only_its_id(world: World) -> None:
    """``returnExisting`` with a public key answers the existing customer's id (what the SDK
    needs to write for it), and of its identity only what the request itself gave: not its
    metadata, nor the address or external id it did not name."""
    secret = {"Authorization": f"Bearer {world.keys['secret']}"}
    public = {"Authorization": f"Bearer {world.keys['public']}"}
    private = {"plan": "enterprise", "email": "ceo@example.com"}
    address = "0x" + uuid.uuid4().hex + "abcdef01"
    external = f"vip-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=f"{world.base}/v1", timeout=30) as api:
        stored = api.post(
            "/customers",
            json={"externalCustomerId": external, "onchainAddress": address, "metadata": private},
            headers=secret,
        ).json()
        for named in ({"externalCustomerId": external}, {"onchainAddress": address}):
            answer = api.post("/customers", json={**named, "returnExisting": True}, headers=public)
            assert answer.status_code == 200, answer.text
            got = answer.json()
            assert got["id"] == stored["id"] and got["isDuplicate"] is True
            assert got["metadata"] is None, got
            assert got["externalCustomerId"] == named.get("externalCustomerId"), got
            assert got["onchainAddress"] == named.get("onchainAddress"), got
        # the secret key still gets the whole customer
        again = api.post(
            "/customers", json={"externalCustomerId": external, "returnExisting": True},
            headers=secret,
        ).json()  # fmt: skip
        assert again["metadata"] == private and again["onchainAddress"] == address
