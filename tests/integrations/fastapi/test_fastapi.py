"""``DripMiddleware`` on a real FastAPI app, through Starlette's TestClient, checked on the server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

pytest.importorskip("fastapi")

from drip.integrations.asgi import route_template
from drip.integrations.fastapi import DripMiddleware
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Route

import drip
import drip.testing
from drip import Drip, RunStatus
from drip._default import reset_default_client


@drip.metered("db.queries")
def query(n: int) -> int:
    return n


@drip.metered("stream.chunks")
async def chunk(i: int) -> str:
    await asyncio.sleep(0.02)
    return f"chunk {i}\n"


def header_customer(request: Request) -> str | None:
    return request.headers.get("x-customer")


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"item": query(item_id)}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            for i in range(3):
                yield await chunk(i)

        return StreamingResponse(body())

    @app.get("/boom")
    async def boom() -> None:
        query(1)
        raise LookupError("no such item")

    @app.get("/unavailable")
    async def unavailable() -> PlainTextResponse:
        return PlainTextResponse("later", status_code=503)

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "nope")

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.exception_handler(Exception)
    async def handled(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"handled": type(exc).__name__}, status_code=500)

    app.include_router(router)
    app.add_middleware(DripMiddleware, customer=options.pop("customer", header_customer), **options)
    return app


@pytest.fixture
def app() -> FastAPI:
    return make_app(exclude=["/health"])


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def runs_of(live: Drip, customer: str) -> list[Any]:
    assert live.flush(30).ok
    return live.list_runs(customer_id=customer, limit=1000).data


def test_200_requests_from_5_customers_are_counted_exactly(
    live: Drip, customers: list[str], http: TestClient, slug: Callable[[str], str]
) -> None:
    for i in range(200):
        customer = customers[i % 5]
        response = http.get(f"/v1/items/{i}", headers={"x-customer": customer})
        assert response.json() == {"item": i}
    assert live.flush(30).ok
    for customer in customers:
        summary = live.get_usage_summary(customer_id=customer, meter="api_calls")
        [meter] = summary.meters
        assert meter.run_events == 40 and meter.quantity == 40
        queries = live.get_usage_summary(customer_id=customer, meter="db.queries").meters
        assert queries[0].run_events == 40  # the handler's metered calls, in the request runs
        runs = live.list_runs(customer_id=customer, limit=1000).data
        assert len(runs) == 40
        assert {slug(r.workflow_id) for r in runs} == {"GET /v1/items/{item_id}"}
        assert {r.status for r in runs} == {RunStatus.COMPLETED}


def test_request_id_header_is_the_external_run_id(
    live: Drip, customers: list[str], http: TestClient
) -> None:
    http.get("/v1/items/7", headers={"x-customer": customers[0], "x-request-id": "req-77"})
    [run] = runs_of(live, customers[0])
    assert live.get_run(run.id).external_run_id == "req-77"


def test_a_stream_is_metered_after_its_last_chunk(
    live: Drip, customers: list[str], http: TestClient
) -> None:
    response = http.get("/stream", headers={"x-customer": customers[1]})
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    [run] = runs_of(live, customers[1])
    timeline = live.get_run_timeline(run.id)
    assert timeline.status is RunStatus.COMPLETED and timeline.workflow_name == "GET /stream"
    chunks = [e for e in timeline.events if e.meter == "stream.chunks"]
    [request] = [e for e in timeline.events if e.meter == "api_calls"]
    assert len(chunks) == 3
    last_chunk_end = max(_ts(e.timestamp) + (e.duration_ms or 0) / 1000 for e in chunks)
    assert _ts(request.timestamp) >= last_chunk_end
    meta = request.metadata or {}
    assert meta["duration_ms"] >= 60  # three chunks of 20 ms each were inside the request
    assert (meta["status_code"], meta["route"], meta["method"]) == (200, "/stream", "GET")
    assert "incomplete" not in meta


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def test_an_exception_fails_the_run_and_reaches_the_app_handler(
    live: Drip, customers: list[str], http: TestClient
) -> None:
    response = http.get("/boom", headers={"x-customer": customers[2]})
    assert response.status_code == 500 and response.json() == {"handled": "LookupError"}
    [run] = runs_of(live, customers[2])
    details = live.get_run(run.id)
    assert details.status is RunStatus.FAILED and details.error_code == "LookupError"
    assert "no such item" in (details.error_message or "")
    metas = [e.metadata for e in live.get_run_timeline(run.id).events if e.meter == "api_calls"]
    assert metas[0] is not None and metas[0]["status_code"] == 500


def test_exceptions_propagate_unchanged_without_a_handler(live: Drip, customers: list[str]) -> None:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise LookupError("raw")

    app.add_middleware(DripMiddleware, customer=header_customer)
    with TestClient(app) as client, pytest.raises(LookupError, match="raw"):
        client.get("/boom", headers={"x-customer": customers[0]})
    [run] = runs_of(live, customers[0])
    assert run.status is RunStatus.FAILED


def test_5xx_fails_the_run_4xx_completes_it(
    live: Drip, customers: list[str], http: TestClient
) -> None:
    assert http.get("/unavailable", headers={"x-customer": customers[3]}).status_code == 503
    assert http.get("/missing", headers={"x-customer": customers[4]}).status_code == 404
    [failed] = runs_of(live, customers[3])
    details = live.get_run(failed.id)
    assert details.status is RunStatus.FAILED and details.error_code == "HTTPServerError"
    assert details.error_message == "HTTP 503 Service Unavailable"
    [missing] = runs_of(live, customers[4])
    assert missing.status is RunStatus.COMPLETED
    [event] = live.get_run_timeline(missing.id).events
    assert (event.metadata or {})["status_code"] == 404


class Unicorn(Exception):
    pass


@pytest.mark.parametrize("handler_kind", ["async", "sync"])
def test_an_exception_an_app_handler_answers_4xx_still_fails_the_run(
    live: Drip, customers: list[str], handler_kind: str
) -> None:
    """FastAPI's own example: a handler answers ``Unicorn`` with 418. The handler runs below the
    middleware (the exception never reaches it), yet the run is FAILED with the exception, and
    the 418 recorded; HTTPException and request validation (answers) stay COMPLETED."""
    app = FastAPI()
    seen: list[str] = []

    @app.get("/unicorn")
    async def unicorn() -> None:
        query(1)
        raise Unicorn("a unicorn")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "nope")

    if handler_kind == "async":

        @app.exception_handler(Unicorn)
        async def on_unicorn(request: Request, exc: Unicorn) -> JSONResponse:
            seen.append(str(exc))
            return JSONResponse({"oops": str(exc)}, status_code=418)

    else:

        @app.exception_handler(Unicorn)
        def on_unicorn_sync(request: Request, exc: Unicorn) -> JSONResponse:
            seen.append(str(exc))
            return JSONResponse({"oops": str(exc)}, status_code=418)

    app.add_middleware(DripMiddleware, customer=header_customer)
    with TestClient(app) as client:
        answer = client.get("/unicorn", headers={"x-customer": customers[0]})
        assert (answer.status_code, answer.json()) == (418, {"oops": "a unicorn"})
        assert client.get("/missing", headers={"x-customer": customers[1]}).status_code == 404
        bad = client.get("/items/x", headers={"x-customer": customers[2]})
        assert bad.status_code == 422
    assert seen == ["a unicorn"]
    [run] = runs_of(live, customers[0])
    details = live.get_run(run.id)
    assert details.status is RunStatus.FAILED and details.error_code == "Unicorn"
    events = {e.meter: e for e in live.get_run_timeline(run.id).events}
    assert set(events) == {"api_calls", "db.queries"}  # the handler's own calls land in it too
    assert (events["api_calls"].metadata or {})["status_code"] == 418
    for customer, status in ((customers[1], 404), (customers[2], 422)):
        [answered] = runs_of(live, customer)
        assert answered.status is RunStatus.COMPLETED
        [event] = live.get_run_timeline(answered.id).events
        assert (event.metadata or {})["status_code"] == status


def test_excluded_routes_and_requests_without_customer_record_nothing(
    live: Drip, customers: list[str], http: TestClient
) -> None:
    assert http.get("/health", headers={"x-customer": customers[0]}).json() == "ok"
    assert http.get("/v1/items/3").json() == {"item": 3}  # no customer: served, not metered
    assert runs_of(live, customers[0]) == []
    assert live.stats().recorded == 0


def test_include_meters_only_matching_routes(
    live: Drip, customers: list[str], slug: Callable[[str], str]
) -> None:
    app = make_app(include=["/v1/*"])
    with TestClient(app) as client:
        client.get("/health", headers={"x-customer": customers[0]})
        client.get("/v1/items/1", headers={"x-customer": customers[0]})
    assert [slug(r.workflow_id) for r in runs_of(live, customers[0])] == ["GET /v1/items/{item_id}"]


def test_a_failing_customer_callable_breaks_nothing(
    live: Drip, customers: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Request) -> str:
        raise RuntimeError("customer lookup down")

    with TestClient(make_app(customer=broken)) as client:
        assert client.get("/v1/items/5").json() == {"item": 5}
    assert "customer callable raised" in caplog.text
    assert live.stats().recorded == 0


def test_async_customer_and_mapping_and_options(
    live: Drip, customers: list[str], slug: Callable[[str], str]
) -> None:
    async def lookup(request: Request) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"customer_id": customers[0]}

    app = make_app(customer=lookup, workflow="api", meter="requests", quantity=2)
    with TestClient(app) as client:
        client.get("/v1/items/1")
    [run] = runs_of(live, customers[0])
    assert slug(run.workflow_id) == "api"
    [meter] = live.get_usage_summary(customer_id=customers[0], meter="requests").meters
    assert meter.quantity == 2


def test_settings_mistakes_raise_when_installed() -> None:
    with pytest.raises(TypeError, match="customer must be a callable"):
        DripMiddleware(FastAPI(), customer="cus_1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="include takes route patterns"):
        DripMiddleware(FastAPI(), customer=header_customer, include=[""])


def test_route_templates_through_mounts_and_plain_starlette() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    sub = Starlette(routes=[Route("/hello/{name}", hello)])
    app = FastAPI()
    app.mount("/sub", sub)
    scope = {"type": "http", "path": "/sub/hello/ann", "root_path": "", "method": "GET",
             "app": app}  # fmt: skip
    assert route_template(scope) == "/sub/hello/{name}"
    scope["path"] = "/nowhere"
    assert route_template(scope) is None
    assert route_template({"type": "http", "path": "/x"}, app=object()) is None


def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = DripMiddleware(inner, customer=header_customer)
    asyncio.run(middleware({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_duration_covers_a_slow_handler(live: Drip, customers: list[str]) -> None:
    app = FastAPI()

    @app.get("/slow")
    def slow() -> str:
        time.sleep(0.05)
        return "done"

    app.add_middleware(DripMiddleware, customer=header_customer)
    with TestClient(app) as client:
        client.get("/slow", headers={"x-customer": customers[0]})
    [run] = runs_of(live, customers[0])
    [event] = live.get_run_timeline(run.id).events
    assert (event.metadata or {})["duration_ms"] >= 50


def test_a_client_leaving_mid_stream_ends_the_run_marked_incomplete(
    live: Drip, customers: list[str]
) -> None:
    app = make_app()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/stream", "raw_path": b"/stream", "query_string": b"",
             "root_path": "", "headers": [(b"x-customer", customers[0].encode())]}  # fmt: skip
    sent: list[dict[str, Any]] = []

    asked: list[int] = []

    async def receive() -> dict[str, Any]:
        asked.append(1)
        if len(asked) == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        while not any(m["type"] == "http.response.body" for m in sent):
            await asyncio.sleep(0.005)
        return {"type": "http.disconnect"}  # the client goes away after the first chunk

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert not any(m["type"] == "http.response.body" and not m.get("more_body") for m in sent)
    [run] = runs_of(live, customers[0])
    [request] = [e for e in live.get_run_timeline(run.id).events if e.meter == "api_calls"]
    assert (request.metadata or {}).get("incomplete") is True


def test_a_stream_cut_by_an_error_or_a_server_stopping_is_marked_incomplete(
    live: Drip, customers: list[str]
) -> None:
    """The response had started (status 200 sent) but its last chunk never went: a server's
    graceful-shutdown timeout cancels the application mid-stream (uvicorn
    ``--timeout-graceful-shutdown``), or the body raises. The event said 200 and complete."""
    app = FastAPI()

    @app.get("/cut/{how}")
    async def cut(how: str) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            yield "first "
            if how == "error":
                raise RuntimeError("feed down")
            await asyncio.sleep(3600)  # the server's stop cancels it here

        return StreamingResponse(body())

    app.add_middleware(DripMiddleware, customer=header_customer)

    async def serve(how: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": f"/cut/{how}",
                 "raw_path": f"/cut/{how}".encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"x-customer", customers[0].encode())]}  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)  # the client stays
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        task = asyncio.ensure_future(app(scope, receive, send))
        while not task.done() and not any(m.get("body") for m in sent):
            await asyncio.sleep(0.005)
        task.cancel()  # what uvicorn does to a request still running at its stop
        with pytest.raises(BaseException):  # noqa: B017 - CancelledError, or the body's error
            await task

    for how in ("cancel", "error"):
        asyncio.run(serve(how))
    runs = {r.status.value: r for r in runs_of(live, customers[0])}
    assert set(runs) == {"CANCELLED", "FAILED"}, runs
    for run in runs.values():
        [event] = [e for e in live.get_run_timeline(run.id).events if e.meter == "api_calls"]
        assert (event.metadata or {}).get("incomplete") is True, event.metadata
        assert (event.metadata or {})["status_code"] == 200


def test_fastapi_and_asgi_name_the_same_class() -> None:
    from drip.integrations import asgi, fastapi

    assert fastapi.DripMiddleware is asgi.DripMiddleware


def test_the_customer_callable_gets_a_whole_starlette_request_made_cheaply() -> None:
    seen: dict[str, Any] = {}

    async def customer(request: Request) -> str:
        # made with the scope and receive only: Starlette's other per-request attributes are
        # class defaults, until Starlette's own methods write them
        seen["fields"] = sorted(vars(request))
        seen["is_request"] = isinstance(request, Request)
        seen["read"] = (request.headers["x-customer"], request.headers.get("x-none"),
                        dict(request.query_params), request.client, str(request.url),
                        request.method, request.cookies, request.path_params,
                        await request.body(), await request.json(), request.headers.raw[0])  # fmt: skip
        request.state.seen = True
        return "cus_1"

    app = FastAPI()

    @app.post("/items")
    def items() -> dict[str, int]:
        return {"ok": 1}

    app.add_middleware(DripMiddleware, customer=customer)
    with drip.testing.capture() as cap, TestClient(app) as client:
        answer = client.post("/items?q=1", json={"a": 1},
                             headers={"x-customer": "cus_1", "cookie": "c=2"})  # fmt: skip
    assert answer.json() == {"ok": 1}
    assert seen["fields"] == ["_read", "scope"] and seen["is_request"]
    headers, none, query, client_, url, method, cookies, params, body, data, raw = seen["read"]
    assert headers == "cus_1" and none is None and query == {"q": "1"} and client_ is not None
    assert url.endswith("/items?q=1") and method == "POST" and cookies == {"c": "2"}
    assert params == {} and body == b'{"a":1}' and data == {"a": 1} and raw[0] == b"host"
    assert [s.customer_id for s in cap.run_starts] == ["cus_1"] and len(cap.events) == 1


def test_the_lifespan_end_flushes_and_says_what_the_server_did_not_take(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the server cannot be reached: the flush at the lifespan's end is bounded, and what is
    # still waiting is said then (uvicorn may end the process next, without atexit)
    client = drip.configure(
        api_key="sk_test_lifespan_0123456789", base_url="http://127.0.0.1:9",
        flush_interval=600, shutdown_timeout=0.5, max_retry_time=60,
    )  # fmt: skip
    try:
        app = make_app()
        with TestClient(app) as http:
            for i in range(3):
                answer = http.get(f"/v1/items/{i}", headers={"x-customer": "cus_lifespan"})
                assert answer.is_success
        stopped = [r for r in caplog.records if "when the application stopped" in r.getMessage()]
        # 3 runs of 4 records: start, the handler's query, the request event, end
        assert [r.getMessage().split()[1] for r in stopped] == ["12"]
        assert client.stats().pending == 12  # flushed (bounded), not closed: the process goes on
    finally:
        reset_default_client()


def test_requests_count_for_the_api_calls_meter(
    live: Drip, customers: list[str], http: TestClient
) -> None:
    """The request event counts for ``meter=`` (kind ``meter`` in the usage summary, where the
    dashboard's usage charts and per-customer table read), whether the handler metered nothing
    (the compiled request event) or something (the run was referred to: a manual event). It
    was kind ``event``, like ``run.event("report.sent")``, and missing from the dashboard."""
    http.get("/health", headers={"x-customer": customers[2]})  # excluded: not metered
    http.get("/stream", headers={"x-customer": customers[2]})  # metered calls in the handler
    http.get("/unavailable", headers={"x-customer": customers[2]})  # nothing metered inside
    with drip.run("outer", customer_id=customers[2]):  # a request inside an open run
        http.get("/unavailable", headers={"x-customer": customers[2]})
    assert live.flush(30).ok
    summary = live.get_usage_summary(customer_id=customers[2], meter="api_calls")
    assert [(m.kind, m.quantity, m.run_events) for m in summary.meters] == [("meter", 3, 3)]
