"""Hostile input gets a 4xx, never a 500; HTML answers carry security headers; the API
documents itself only in local development; the app factory reads the environment."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from drip._checks import MAX_METADATA_DEPTH
from drip.server import create_app, start_server
from drip.server.http import MAX_DEPTH
from drip.server.settings import Settings

DEEP = b"[" * 10_000 + b"]" * 10_000
WRITES = [
    ("POST", "/customers"),
    ("POST", "/workflows"),
    ("POST", "/usage/internal"),
    ("POST", "/usage/internal/batch"),
    ("POST", "/usage"),
    ("POST", "/runs"),
    ("POST", "/runs/record"),
    ("PATCH", "/runs/run_x"),
    ("POST", "/run-events"),
    ("POST", "/run-events/batch"),
    ("POST", "/ingest"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_json_nested_10000_deep_is_a_400(api: httpx.Client, method: str, path: str) -> None:
    response = api.request(method, path, content=DEEP)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "JSON_TOO_DEEP"


@pytest.mark.parametrize(
    ("depth", "status"),
    [(4, 201), (MAX_METADATA_DEPTH + 10, 422), (MAX_DEPTH - 5, 422)],
)
def test_nesting_below_the_parser_limit_is_judged_by_the_checks(
    api: httpx.Client, depth: int, status: int
) -> None:
    nested = '{"a":' * (depth - 1) + "1" + "}" * (depth - 1)
    body = f'{{"externalCustomerId": "deep{depth}", "metadata": {nested}}}'
    response = api.post("/customers", content=body)
    assert response.status_code == status, response.text


def test_a_huge_offset_is_a_422(api: httpx.Client) -> None:
    response = api.get("/customers", params={"offset": "100000000000000000000"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("quantity", ["1e308", "1e20", "Infinity", "-1"])
def test_a_charge_too_large_or_not_finite_is_a_422(
    api: httpx.Client, customer_id: str, quantity: str
) -> None:
    body = f'{{"customerId": "{customer_id}", "usageType": "api_calls", "quantity": {quantity}}}'
    response = api.post("/usage", content=body)
    assert response.status_code == 422, response.text
    assert api.get("/usage/summary").json()["meters"] == []  # nothing was stored


def test_a_large_but_storable_charge_goes_in(api: httpx.Client, customer_id: str) -> None:
    body = {"customerId": customer_id, "usageType": "api_calls", "quantity": 1e9}
    response = api.post("/usage", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["charge"]["amountUsdc"] == "1000000.000000"


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items()}


def test_html_answers_carry_security_headers(account: Any) -> None:
    for path in ("/", "/docs"):
        response = httpx.get(account.base_url + path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        headers = _headers(response)
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    page = httpx.get(account.base_url + "/").headers["content-security-policy"]
    assert "default-src 'none'" in page and "connect-src 'self'" in page
    # the dashboard has no inline script or style at all: its own files only
    assert "script-src 'self';" in page and "style-src 'self';" in page
    assert "unsafe-inline" not in page


def test_production_turns_the_docs_off(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIP_PRODUCTION", "1")
    with start_server(f"sqlite:///{tmp_path / 'p.db'}") as server:
        assert httpx.get(server.url + "/docs").status_code == 404
        assert httpx.get(server.url + "/openapi.json").status_code == 404
        assert httpx.get(server.url + "/health").status_code == 200


def test_the_factory_reads_its_settings_from_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("DRIP_DATABASE_URL", url)
    monkeypatch.setenv("DRIP_PRICES", "tokens=0.5,api_calls=0.001")
    monkeypatch.setenv("DRIP_PRODUCTION", "1")
    app = create_app()
    try:
        settings = app.state.drip.settings
        assert settings.database_url == url and settings.production
        assert app.state.drip.pricing.micros("tokens", 2) == 1_000_000
        assert Settings.from_env(settings.to_env()) == settings
    finally:
        app.state.drip.db.dispose()


def test_the_openapi_document_declares_every_request_body(account: Any) -> None:
    document = httpx.get(account.base_url + "/openapi.json").json()
    schemas = document["components"]["schemas"]
    for method, path in WRITES:
        template = "/v1/runs/{run_id}" if path == "/runs/run_x" else f"/v1{path}"
        operation = document["paths"][template][method.lower()]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in schemas, (method, path)
    assert "customerId" in schemas["TrackUsageRequest"]["properties"]  # camelCase, as sent


#: ISO-8601 times whose UTC falls outside years 1-9999 (Python's datetime range)
OUT_OF_RANGE = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_a_time_out_of_range_is_refused_alone(
    api: httpx.Client, customer_id: str, moment: str
) -> None:
    """A timestamp whose UTC is before year 1 or after 9999 is a 422 naming it (one ingest item
    rejected, the rest stored), not a 500 that fails the SDK's whole batch."""
    body = {"customerId": customer_id, "usageType": "m", "quantity": 1, "timestamp": moment}
    response = api.post("/usage/internal", json=body)
    assert response.status_code == 422, response.text
    assert "timestamp" in response.json()["message"], response.text
    items = [
        {"type": "usage", "id": "u-good", "customerId": customer_id, "usageType": "m",
         "quantity": 1},
        {"type": "usage", "id": "u-bad", "customerId": customer_id, "usageType": "m",
         "quantity": 1, "timestamp": moment},
    ]  # fmt: skip
    response = api.post("/ingest", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "rejected"]
    assert results[1]["code"] == "INVALID_TIMESTAMP"
    response = api.get("/usage/summary", params={"since": moment})
    assert response.status_code == 422, response.text
    assert "since" in response.json()["message"]


@pytest.mark.parametrize(
    "window",
    [
        {"since": "9999-12-31T23:59:59Z"},
        {"until": "9999-12-31T23:30:00Z"},
        {"since": "9999-12-31T23:00:00Z", "groupBy": "hour"},
        {"since": "9999-12-31T22:30:00Z", "until": "9999-12-31T23:45:00Z", "groupBy": "day"},
    ],
)
def test_the_last_hour_of_year_9999_is_summed(
    api: httpx.Client, customer_id: str, window: dict[str, str]
) -> None:
    """Usage stored in the last hour there is is summed like any other (the hour after it
    cannot be computed: it was a 500)."""
    item = {"type": "usage", "id": "u-last", "customerId": customer_id, "usageType": "late",
            "quantity": 3, "timestamp": "9999-12-31T23:50:00.000000Z"}  # fmt: skip
    assert api.post("/ingest", json={"items": [item]}).status_code == 200
    response = api.get("/usage/summary", params={"customerId": customer_id, **window})
    assert response.status_code == 200, response.text
    late = [m["quantityDecimal"] for m in response.json()["meters"] if m["meter"] == "late"]
    stored = "9999-12-31T23:50"
    inside = window.get("since", "") <= stored < window.get("until", "~")
    assert late == (["3"] if inside else [])


def test_a_compressed_body_is_read_or_refused_by_name(api: httpx.Client, customer_id: str) -> None:
    """``Content-Encoding: gzip`` / ``deflate`` bodies are decompressed (the same 8 MiB limit on
    what they decompress to: a small bomb is a 413); another encoding is a 415 naming it; a
    body that is not what it claims is a 400 naming the encoding (it was 'not valid JSON')."""
    import gzip
    import zlib

    from drip.server.http import MAX_BODY_BYTES

    body = json.dumps({"customerId": customer_id, "usageType": "gz", "quantity": 2}).encode()
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        response = api.post(
            "/usage/internal",
            content=packed,
            headers={"content-type": "application/json", "content-encoding": encoding},
        )
        assert response.status_code == 200, (encoding, response.text)
    summary = api.get("/usage/summary", params={"customerId": customer_id}).json()
    assert [m["quantityDecimal"] for m in summary["meters"] if m["meter"] == "gz"] == ["4"]

    def post(content: bytes, encoding: str) -> httpx.Response:
        headers = {"content-type": "application/json", "content-encoding": encoding}
        return api.post("/ingest", content=content, headers=headers)

    bomb = gzip.compress(b" " * (MAX_BODY_BYTES + 1))
    assert len(bomb) < 64 * 1024
    assert post(bomb, "gzip").status_code == 413
    refused = post(b"\x00\x01", "br")
    assert refused.status_code == 415, refused.text
    assert "'br'" in refused.json()["message"]
    broken = post(b"not gzip at all", "gzip")
    assert broken.status_code == 400, broken.text
    assert "gzip" in broken.json()["message"]


def test_an_events_batch_takes_at_most_as_many_events_as_an_ingest_batch(
    api: httpx.Client, customer_id: str
) -> None:
    """``POST /v1/run-events/batch`` had no count limit: 120,000 small events fit in 8 MiB and
    held the database's write lock for seconds. It takes ``MAX_ITEMS`` like ``/v1/ingest``."""
    from drip.server.ingest_parse import MAX_ITEMS

    run_id = api.post("/runs", json={"customerId": customer_id, "workflowId": "w"}).json()["id"]
    events = [{"runId": run_id, "eventType": "e"}] * (MAX_ITEMS + 1)
    response = api.post("/run-events/batch", json={"events": events})
    assert response.status_code == 413, response.text[:200]
    assert response.json()["code"] == "TOO_MANY_ITEMS"
    assert str(MAX_ITEMS) in response.json()["message"]
    timeline = api.get(f"/runs/{run_id}/timeline").json()
    assert timeline["events"] == []  # nothing of it was stored


def test_times_before_year_1000_keep_four_digit_years(api: httpx.Client, customer_id: str) -> None:
    """Stored times are text that sorts in time order: year 999 must be '0999', not '999'
    (strftime's %Y on Linux), which sorted after 2026 (a window from 2026 counted it) and made
    a window from year 1 a 500."""
    body = {"customerId": customer_id, "usageType": "old", "quantity": 5,
            "timestamp": "0999-06-01T12:00:00Z"}  # fmt: skip
    stored = api.post("/usage/internal", json=body)
    assert stored.status_code == 200, stored.text

    def total(**window: str) -> list[str]:
        response = api.get("/usage/summary", params={"customerId": customer_id, **window})
        assert response.status_code == 200, response.text
        return [m["quantityDecimal"] for m in response.json()["meters"] if m["meter"] == "old"]

    assert total(since="2026-01-01") == []
    assert total(since="0001-01-01T00:30:00Z", until="1000-01-01") == ["5"]
    assert total(since="0999-06-01T11:30:00Z", groupBy="day") == ["5"]


@pytest.mark.parametrize(
    "path",
    [
        "/runs/a%00b",
        "/runs/a%00b/timeline",
        "/customers/a%00b",
        "/runs?customerId=a%00b",
        "/runs?externalCustomerId=a%00b",
        "/usage/summary?customerId=a%00b",
        "/usage/summary?meter=a%00b",
    ],
)
def test_a_nul_in_the_path_or_query_is_a_422(api: httpx.Client, path: str) -> None:
    """PostgreSQL takes no NUL in text: an id or filter holding one was a 500 there (SQLite
    answered 404 or an empty success). It is refused before the database, on both."""
    response = api.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "NUL" in response.json()["message"]
    ended = api.patch("/runs/a%00b", json={"status": "COMPLETED"})
    assert ended.status_code == 422, ended.text
