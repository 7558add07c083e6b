"""The request run every web middleware records (``integrations/_web.py``), through the ASGI one.

The request event's metadata is proven valid once per route and method instead of being
checked on every request; these tests hold that the proven path records exactly what the
checked path (``Run.event``) records, and that whatever is not proven still takes the checks.
"""

from __future__ import annotations

import asyncio
import gc
import http
import logging
from typing import Any

import pytest

pytest.importorskip("starlette")

from drip.integrations._web import RequestMeter, RequestRun
from drip.integrations.asgi import DripMiddleware

import drip.context
import drip.testing


def raw_app(status: Any = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def call(app: Any, method: str = "GET", path: str = "/items/7", **headers: str) -> None:
    scope = {"type": "http", "method": method, "path": path, "root_path": "",
             "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    asyncio.run(app(scope, receive, send))


def customer(request: Any) -> str | None:
    return request.headers.get("x-customer")


def test_the_proven_path_records_what_run_event_records() -> None:
    middleware = DripMiddleware(raw_app(), customer=customer, workflow="api")
    with drip.testing.capture() as cap:
        call(middleware, x_customer="cus_1", x_request_id="req-1")
        with drip.run("api", customer_id="cus_1", external_run_id="req-1") as run:
            run.event("api_calls", 1, metadata={"status_code": 200, "route": "<unmatched>",
                                                "method": "GET", "duration_ms": 0.5})  # fmt: skip
    ours, theirs = cap.events
    assert ours.metadata is not None and theirs.metadata is not None
    assert ours.metadata.pop("duration_ms") >= 0 and theirs.metadata.pop("duration_ms") == 0.5
    skip = {"id", "run_id", "timestamp", "meter"}
    assert ours.model_dump(exclude=skip) == theirs.model_dump(exclude=skip)
    # and counts for its meter, where run.event's event type is only a count of events
    assert (ours.meter, theirs.meter) == ("api_calls", None)
    first, second = cap.run_starts
    skip = {"id", "started_at"}
    assert first.model_dump(exclude=skip) == second.model_dump(exclude=skip)
    assert [e.status for e in cap.run_ends] == ["COMPLETED", "COMPLETED"]


def test_a_status_that_is_not_a_plain_int_takes_the_checks() -> None:
    # an IntEnum is valid metadata (JSON writes 200): it goes through Run.event's full check
    middleware = DripMiddleware(raw_app(http.HTTPStatus.OK), customer=customer)
    with drip.testing.capture() as cap:
        call(middleware, x_customer="cus_1")
    [event] = cap.events
    assert event.metadata is not None and event.metadata["status_code"] == 200


def test_metadata_that_cannot_be_proven_is_refused_as_run_event_refuses_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a method longer than the metadata limit: proving fails, the full check refuses the
    # event; the request is still served and its run still ends
    method = "X" * (17 * 1024)
    middleware = DripMiddleware(raw_app(), customer=customer, workflow="api")
    with drip.testing.capture(strict=False) as cap, caplog.at_level(logging.ERROR, "drip"):
        call(middleware, method=method, x_customer="cus_1")
    assert cap.events == []
    assert [e.status for e in cap.run_ends] == ["COMPLETED"]
    assert any("metadata" in str(e) for e in cap.errors)


def test_a_bad_customer_leaves_the_request_unmetered(caplog: pytest.LogCaptureFixture) -> None:
    middleware = DripMiddleware(raw_app(), customer=customer)
    with drip.testing.capture() as cap, caplog.at_level(logging.ERROR, "drip"):
        call(middleware, x_customer="x" * 300)  # longer than a name may be
        call(middleware, x_customer="cus_2")
    assert [s.customer_id for s in cap.run_starts] == ["cus_2"]
    assert caplog.text.count("served but not metered") == 1


def test_a_bad_request_id_is_dropped_and_the_request_still_metered(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the header is the client's: a blank or oversized one left the request unmetered, so a
    # client could choose not to be billed
    from drip.integrations import _web

    monkeypatch.setattr(_web, "_bad_request_id_logged", [-60.0], raising=False)
    middleware = DripMiddleware(raw_app(), customer=customer)
    with drip.testing.capture() as cap, caplog.at_level(logging.WARNING, "drip"):
        call(middleware, x_customer="cus_1", x_request_id=" ")  # blank: not a valid run id
        call(middleware, x_customer="cus_1", x_request_id="r" * 300)  # too long
        with drip.run("outer", customer_id="cus_1"):  # the request's run is a child here
            call(middleware, x_customer="cus_1", x_request_id="r" * 300)
        call(middleware, x_customer="cus_1", x_request_id="req-1")
    starts = [s for s in cap.run_starts if s.workflow != "outer"]
    assert [s.external_run_id for s in starts] == [None, None, None, "req-1"]
    assert len(cap.events) == 4 and "served but not metered" not in caplog.text
    assert caplog.text.count("request id is not used") == 1  # at most one line a minute


def test_shapes_are_remembered_per_route_and_method_and_bounded() -> None:
    meter = RequestMeter(customer=customer)
    shape = meter._shape("GET", "/items/{id}")
    assert shape[0] == "GET /items/{id}" and shape[1] is not None  # proven: its JSON is made
    assert meter._shapes == {("GET", "/items/{id}"): shape}
    unproven = RequestMeter(customer=customer, workflow="api")._shape("X" * (17 * 1024), "/x")
    assert unproven == ("api", None)  # metadata over the limit: not proven, no JSON made
    for i in range(2000):  # methods come from clients: the memory of them is bounded
        meter._shape(f"M{i}", "/x")
    assert len(meter._shapes) == 1024


def test_patterns_match_the_route_not_a_path_the_client_chose() -> None:
    """A client picks the path: matched against it as well, ``exclude`` let a request to a
    billed catch-all route go unbilled by ending its path in an excluded name."""
    meter = RequestMeter(customer=customer, exclude=["*/health", "/internal/*"])
    assert meter.wanted("/files/{name}", "/files/x/health")  # the route is billed
    assert meter.wanted("/files/{name}", "/internal/x") is True
    assert not meter.wanted("/internal/{rest}", "/internal/metrics")
    assert not meter.wanted(None, "/svc/health")  # no route matched: the raw path decides
    included = RequestMeter(customer=customer, include=["/v1/*"])
    assert not included.wanted("/{page}", "/v1/anything")  # a catch-all outside /v1
    assert included.wanted("/v1/items/{item_id}", "/v1/items/3")


def test_patterns_match_behind_a_proxy_prefix() -> None:
    """Served under a prefix the deployment adds (``uvicorn --root-path /api``, a WSGI
    ``SCRIPT_NAME``), a route's template starts with it: ``exclude=["/health"]`` missed
    ``/api/health`` and billed it. Patterns written as in the application match both."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    middleware = DripMiddleware(app, customer=customer, exclude=["/health", "/nowhere"])
    with drip.testing.capture() as cap:
        for path in ("/api/health", "/api/items/3", "/api/nowhere"):
            scope_call(middleware, path, root_path="/api", x_customer="cus_1")
    assert [s.workflow for s in cap.run_starts] == ["GET /api/items/{item_id}"]
    prefixed = RequestMeter(customer=customer, include=["/items/*"])
    assert prefixed.wanted("/api/items/{item_id}", "/api/items/3", "/api")
    assert not prefixed.wanted("/api/health", "/api/health", "/api")
    assert not prefixed.wanted("/apiitems/{x}", "/apiitems/3", "/api")  # not under the prefix
    assert RequestMeter(customer=customer, include=["/api/items/*"]).wanted(
        "/api/items/{item_id}", "/api/items/3", "/api"
    )  # the full template still matches


def scope_call(app: Any, path: str, root_path: str, **headers: str) -> None:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": root_path,
             "raw_path": path.encode(), "query_string": b"", "app": None,
             "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    del scope["app"]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    asyncio.run(app(scope, receive, send))


def test_meter_and_quantity_mistakes_raise_when_installed() -> None:
    with pytest.raises(ValueError, match="quantity"):
        RequestMeter(customer=customer, quantity=-1)
    with pytest.raises(drip.DripValidationError):
        RequestMeter(customer=customer, meter="x" * 300)


def test_a_request_run_nothing_refers_to_leaves_nothing_the_gc_tracks() -> None:
    # start, event and end recorded at once as flat records: no Run kept by the buffer
    middleware = DripMiddleware(raw_app(), customer=customer)
    with drip.testing.capture() as cap:
        for _ in range(3):
            call(middleware, x_customer="cus_1")
        gc.collect()  # a tuple of ints and strings is untracked by its first collection
        assert cap.records and not any(gc.is_tracked(x) for x in cap.records)
    assert len(cap.run_starts) == len(cap.events) == len(cap.run_ends) == 3
    for start, event, end in zip(cap.run_starts, cap.events, cap.run_ends, strict=True):
        assert start.id == event.run_id == end.run_id and end.status == "COMPLETED"
    assert len({s.id for s in cap.run_starts}) == 3


def test_a_run_the_handler_refers_to_is_started_when_it_first_does() -> None:
    seen: list[str] = []

    @drip.metered("lookups")
    def lookup() -> int:
        return 1

    async def app(scope: Any, receive: Any, send: Any) -> None:
        lookup()
        run = drip.context.current_run()
        assert run is not None
        seen.append(run.id)
        run.event("notes", 2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    with drip.testing.capture() as cap:
        call(DripMiddleware(app, customer=customer), x_customer="cus_1", x_request_id="r-9")
    [start] = cap.run_starts
    assert start.id == seen[0] and start.external_run_id == "r-9"
    kinds = [item["type"] for item in cap.items]
    assert kinds[0] == "run.start" and kinds[-1] == "run.end"  # the start before any event
    assert [e.event_type for e in cap.events] == ["lookups", "notes", "api_calls"]
    assert {e.run_id for e in cap.events} == {start.id}
    assert [e.status for e in cap.run_ends] == ["COMPLETED"]


def test_a_request_outside_any_run_is_one_object_with_its_run_and_inside_one_its_child() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(drip.context.current_run())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = DripMiddleware(app, customer=customer)
    with drip.testing.capture() as cap:
        call(middleware, x_customer="cus_1")
        with drip.run("outer", customer_id="cus_0") as outer:
            call(middleware, x_customer="cus_1")
    alone, child = seen
    # the request and its run are one object, a drip.Run: nothing else is made per request
    assert isinstance(alone, RequestRun) and isinstance(alone, drip.Run)
    assert alone.status == 200 and alone.route == "<unmatched>" and alone.method == "GET"
    assert not isinstance(child, RequestRun) and child.parent_run_id == outer.id
    first, outer_start, nested = cap.run_starts
    assert first.parent_run_id is None and first.workflow == "GET <unmatched>"
    assert outer_start.id == outer.id
    assert nested.parent_run_id == outer.id and nested.id == child.id
    assert nested.customer_id == "cus_1"
    assert len(cap.events) == 2 and [e.status for e in cap.run_ends] == ["COMPLETED"] * 3


@pytest.mark.parametrize(
    "answer", [lambda r: 42, lambda r: b"cus_1", lambda r: "c" * 300, lambda r: {"who": "x"}]
)
def test_a_bad_customer_callable_is_said_once_not_per_request(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # a customer callable with a bug meets every request: a traceback each flooded the log
    middleware = DripMiddleware(raw_app(), customer=answer)
    with drip.testing.capture() as cap, caplog.at_level(logging.ERROR, "drip"):
        for _ in range(5):
            call(middleware)
    assert cap.run_starts == []
    assert caplog.text.count("served but not metered") == 1
    assert caplog.text.count("Traceback") == 1  # the first time: where it went wrong


def test_a_raising_customer_callable_is_said_once_then_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drip.integrations import _web

    def lookup(request: Any) -> str:
        raise KeyError(request.headers.get("x-key"))

    middleware = DripMiddleware(raw_app(), customer=lookup)
    with caplog.at_level(logging.ERROR, "drip"):
        for i in range(3):
            call(middleware, x_key=f"user-{i}")  # a new message each time: the same problem
    assert caplog.text.count("the customer callable raised") == 1
    caplog.clear()
    monkeypatch.setattr(_web, "_PROBLEM_EVERY_S", 0.0)  # a minute later
    with caplog.at_level(logging.ERROR, "drip"):
        call(middleware, x_key="user-9")
    [line] = caplog.records
    assert (
        "3 requests served but not metered" in line.getMessage() and "user-9" in line.getMessage()
    )
    assert line.exc_info is None


@pytest.mark.parametrize("reads", ["json", "form", "nothing"])
def test_a_customer_callable_that_reads_the_body_leaves_it_to_the_application(
    reads: str,
) -> None:
    """The body arrives once (ASGI ``receive``): read by the customer callable, the
    application waited for it forever (the request hung). It is given back."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Any) -> JSONResponse:
        return JSONResponse({"body": (await request.body()).decode()})

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])

    async def lookup(request: Any) -> str | None:
        if reads == "json":
            return str((await request.json())["customer"])
        if reads == "form":
            return str((await request.form())["customer"])
        return "cus_1"

    body = b'{"customer": "cus_1"}' if reads != "form" else b"customer=cus_1&n=2"
    kind = b"application/json" if reads != "form" else b"application/x-www-form-urlencoded"
    middleware = DripMiddleware(app, customer=lookup)
    scope = {"type": "http", "method": "POST", "path": "/echo", "root_path": "",
             "raw_path": b"/echo", "query_string": b"", "http_version": "1.1",
             "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]}  # fmt: skip
    chunks = [{"type": "http.request", "body": body[:5], "more_body": True},
              {"type": "http.request", "body": body[5:], "more_body": False}]  # fmt: skip
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop(0)
        await asyncio.sleep(3600)  # as a server does: the next message is the disconnect
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    async def serve() -> None:
        await asyncio.wait_for(middleware(scope, receive, send), 5)

    with drip.testing.capture() as cap:
        asyncio.run(serve())
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"body":"' + body.replace(b'"', b'\\"') + b'"}'
    assert [s.customer_id for s in cap.run_starts] == ["cus_1"]


def test_a_request_through_two_middlewares_is_metered_once() -> None:
    """A mounted sub-application instrumented as well as its parent (or the middleware added
    twice): the request was two runs, the inner a child of the outer, and two request
    events: billed twice. The outermost middleware that meters it is the one."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    sub = FastAPI()

    @sub.get("/x")
    def x() -> str:
        return "ok"

    sub.add_middleware(DripMiddleware, customer=lambda request: "cus_2")
    app = FastAPI()
    app.mount("/sub", sub)

    @app.get("/top")
    def top() -> str:
        return "ok"

    app.add_middleware(DripMiddleware, customer=customer)
    app.add_middleware(DripMiddleware, customer=customer)  # twice, by mistake
    with drip.testing.capture() as cap, TestClient(app) as client:
        assert client.get("/sub/x", headers={"x-customer": "cus_1"}).json() == "ok"
        assert client.get("/top", headers={"x-customer": "cus_1"}).json() == "ok"
        assert client.get("/sub/x").json() == "ok"  # the outer does not meter it: the inner does
    starts = [(s.workflow, s.customer_id, s.parent_run_id) for s in cap.run_starts]
    assert starts == [("GET /sub/x", "cus_1", None), ("GET /top", "cus_1", None),
                      ("GET /sub/x", "cus_2", None)]  # fmt: skip
    assert [e.meter for e in cap.events] == ["api_calls"] * 3
