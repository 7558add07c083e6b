"""The compiled request run (``drip/_speedups_web.c``) against its Python twins.

``open_request``, ``finish_request`` and ``RequestSend`` take the common case of a metered
request in C; everything else they hand to the Python (``RequestMeter.open``,
``RequestRun.finish``), which stays the reference. Every scenario here is run through the
real ASGI middleware twice, compiled and Python, and must record the same items (ids compared
by where they first appear, times left out), log the same problems and leave the context as
it found it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http
import logging
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

from drip.integrations import _web, asgi
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import drip
import drip.context
import drip.testing

compiled = pytest.mark.skipif(not _web.COMPILED, reason="drip._speedups is not built here")
pytestmark = compiled


@drip.metered("lookups")
def lookup() -> int:
    return 1


async def item(request: Any) -> Any:
    behaviour = request.headers.get("x-do", "")
    if behaviour == "raise":
        raise LookupError("no such item")
    if behaviour == "refer":  # the handler looks at its run: its start is recorded then
        run = drip.context.current_run()
        assert run is not None
        lookup()
        run.event("notes", 2)
        return JSONResponse({"run": run.id})
    if behaviour == "metered":
        lookup()
    if behaviour == "stream":

        async def chunks() -> Any:
            for i in range(3):
                lookup()
                yield f"{i}\n".encode()

        return StreamingResponse(chunks())
    status = int(request.headers.get("x-status", "200"))
    return JSONResponse({"item": request.path_params["item_id"]}, status_code=status)


async def gone(scope: Any, receive: Any, send: Any) -> None:
    # a client that left: the response starts, the last chunk never goes out
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x", "more_body": True})


async def enum_status(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": http.HTTPStatus.OK, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


starlette_app = Starlette(routes=[Route("/items/{item_id}", item, methods=["GET", "POST"])])


def customer(request: Any) -> Any:
    value = request.headers.get("x-customer")
    if value == "mapping":
        return {"customer_id": "cus_mapped"}
    return value


def request(
    app: Any, path: str = "/items/7", method: str = "GET", **headers: str
) -> BaseException | None:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "app": None,
             "query_string": b"",
             "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    if app is starlette_app or getattr(app, "app", None) is starlette_app:
        scope["app"] = starlette_app

    asked = []

    async def receive() -> dict[str, Any]:
        if asked:  # after the body, a client that stays until the response is sent
            await asyncio.Event().wait()
        asked.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    try:
        asyncio.run(app(scope, receive, send))
    except Exception as exc:
        return exc
    return None


#: one request: (which app, path, method, headers)
Call = tuple[str, str, str, dict[str, str]]


def scenarios() -> list[Call]:
    plain = {"x_customer": "cus_1"}
    calls: list[Call] = [
        ("routes", "/items/7", "GET", plain),
        ("routes", "/items/7", "GET", plain),  # the shape and the customer known now
        ("routes", "/items/8", "GET", {"x_customer": "cus_2", "x_request_id": "req-1"}),
        ("routes", "/items/8", "GET", {"x_customer": "cus_2", "x_request_id": ""}),
        ("routes", "/items/8", "GET", {"x_customer": "cus_2", "x_request_id": " "}),
        ("routes", "/items/8", "GET", {"x_customer": "cus_2", "x_request_id": "r" * 300}),
        ("routes", "/items/9", "GET", {**plain, "x_status": "404"}),
        ("routes", "/items/9", "GET", {**plain, "x_status": "500"}),
        ("routes", "/items/9", "GET", {**plain, "x_status": "503"}),
        ("routes", "/items/9", "GET", {**plain, "x_do": "raise"}),
        ("routes", "/items/9", "GET", {**plain, "x_do": "refer"}),
        ("routes", "/items/9", "GET", {**plain, "x_do": "metered"}),
        ("routes", "/items/9", "GET", {**plain, "x_do": "stream"}),
        ("routes", "/items/9", "POST", plain),
        ("routes", "/items/9", "GET", {"x_customer": "mapping"}),
        ("routes", "/items/9", "GET", {"x_customer": "x" * 300}),  # not a valid id
        ("routes", "/items/9", "GET", {}),  # no customer: not metered
        ("routes", "/nowhere", "GET", plain),  # no route: the router's 404
        ("raw", "/raw", "GET", plain),  # an app without a router: <unmatched>
        ("gone", "/gone", "GET", plain),
        ("enum", "/enum", "GET", plain),
    ]
    return calls


def apps() -> dict[str, Any]:
    return {
        "routes": asgi.DripMiddleware(starlette_app, customer=customer),
        "raw": asgi.DripMiddleware(enum_status, customer=customer),
        "gone": asgi.DripMiddleware(gone, customer=customer),
        "enum": asgi.DripMiddleware(enum_status, customer=customer, workflow="enum"),
    }


def normalized(items: list[dict[str, Any]]) -> list[Any]:
    """The items with ids (and trace and span ids) replaced by where they first appear, and
    times left out."""
    names: dict[str, str] = {}

    def same(value: Any, key: str = "") -> Any:
        if key in ("correlationId", "spanId"):  # another span each time: where it appears
            return names.setdefault(value, f"{key}#{len(names)}")
        if isinstance(value, dict):
            return {k: same(v, k) for k, v in value.items() if k not in TIMES}
        if isinstance(value, list):
            return [same(v) for v in value]
        if isinstance(value, str) and value[:4] in ("run_", "evt_"):
            return names.setdefault(value, f"{value[:3]}#{len(names)}")
        return value

    return [same(i) for i in items]


TIMES = {"timestamp", "startedAt", "endedAt", "durationMs", "duration_ms"}


@contextlib.contextmanager
def python_twins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setattr(asgi, "open_request", _web.RequestMeter.open)
        patch.setattr(asgi, "finish_request", _web._finish)
        patch.setattr(asgi, "watch", asgi._watch)
        yield


def record(calls: list[Call], wrap: Callable[[], Any]) -> tuple[list[Any], list[str], list[Any]]:
    """(normalized items, logged problems, outcomes) of ``calls`` through fresh middlewares."""
    made = apps()
    logged: list[str] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            logged.append(rec.getMessage())

    keep = Keep(logging.ERROR)
    logging.getLogger("drip").addHandler(keep)
    outcomes = []
    try:
        with drip.testing.capture(strict=False) as cap, wrap():
            for which, path, method, headers in calls:
                before = drip.context.SCOPE.get()
                outcome = request(made[which], path, method, **headers)
                assert drip.context.SCOPE.get() == before  # the context is left as found
                outcomes.append(type(outcome).__name__ if outcome else None)
    finally:
        logging.getLogger("drip").removeHandler(keep)
    return normalized(cap.items), logged, outcomes


def test_every_scenario_records_what_the_python_records(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scenarios()
    ours = record(calls, contextlib.nullcontext)
    theirs = record(calls, lambda: python_twins(monkeypatch))
    assert ours == theirs
    items, logged, outcomes = ours
    assert outcomes.count("LookupError") == 1 and len(logged) == 1  # one bad customer
    kinds = [i["type"] for i in items]
    assert kinds.count("run.start") == kinds.count("run.end") == 19  # bad ids: metered


def test_random_sequences_record_what_the_python_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rnd = random.Random(7)
    pool = scenarios()
    for _ in range(5):
        calls = [rnd.choice(pool) for _ in range(40)]
        assert record(calls, contextlib.nullcontext) == record(
            calls, lambda: python_twins(monkeypatch)
        )


def test_inside_a_run_and_under_a_span_as_the_python(monkeypatch: pytest.MonkeyPatch) -> None:
    tracer = TracerProvider().get_tracer("test")
    calls = scenarios()[:14]

    @contextlib.contextmanager
    def around(python: bool) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if python:
                stack.enter_context(python_twins(monkeypatch))
            stack.enter_context(tracer.start_as_current_span("request"))
            yield

    ours = record(calls, lambda: around(False))
    theirs = record(calls, lambda: around(True))
    assert ours == theirs
    # the span's trace id is the runs' correlation id, its span id on the events
    starts = [i for i in ours[0] if i["type"] == "run.start"]
    assert starts and all(s["correlationId"].startswith("correlationId#") for s in starts)

    def nested(python: bool) -> Any:
        @contextlib.contextmanager
        def scope() -> Iterator[None]:
            with contextlib.ExitStack() as stack:
                if python:
                    stack.enter_context(python_twins(monkeypatch))
                stack.enter_context(drip.run("outer", customer_id="cus_0"))
                yield

        return scope

    assert record(calls, nested(False)) == record(calls, nested(True))


def test_what_is_not_the_common_case_goes_to_the_python() -> None:
    meter = _web.RequestMeter(customer=customer)
    with drip.testing.capture() as cap:
        first = _web.open_request(meter, "cus_1", "GET", "/a", None)  # checks, then remembers
        assert isinstance(first, _web.RequestRun)
        _web.finish_request(first, None)
        again = _web.open_request(meter, "cus_1", "GET", "/a", None)  # the compiled path
        assert isinstance(again, _web.RequestRun) and again.customer_id == "cus_1"
        assert drip.context.current_run() is again
        again.status = 200
        _web.finish_request(again, None)
        _web.finish_request(again, None)  # a second finish does nothing
        assert drip.context.current_run() is None
        assert _web.open_request(meter, None, "GET", "/a", None) is None
        assert _web.open_request(meter, 42, "GET", "/a", None) is None  # logged, not raised
        bad = _web.open_request(meter, "cus_1", "GET", "/a", "bad id\x00")  # metered without
        assert isinstance(bad, _web.RequestRun) and bad.external_run_id is None
        _web.finish_request(bad, None)
    assert len(cap.run_starts) == len(cap.run_ends) == 3
    assert [e.metadata["status_code"] for e in cap.events if e.metadata] == [None, 200, None]
    with pytest.raises(TypeError):
        _web.finish_request()  # type: ignore[call-arg]


def test_no_reference_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thousand requests through the compiled path leave no object behind but their flat
    records (cleared here), and every argument's references as they were."""
    meter = _web.RequestMeter(customer=customer)
    customer_id, method, route, request_id = "cus_leak", "GET", "/leak", "req-leak"
    watched = [meter, customer_id, method, route, request_id]

    def requests(n: int) -> None:
        for i in range(n):
            run = _web.open_request(meter, customer_id, method, route, request_id)
            assert run is not None
            run.status = 200 if i % 3 else None
            if i % 2:
                run.response_done()
            _web.finish_request(run, None)

    with drip.testing.capture() as cap:
        requests(50)
        cap.records.clear()
        gc.collect()
        before = [sys.getrefcount(o) for o in watched]
        blocks = sys.getallocatedblocks()
        requests(1000)
        assert len(cap.run_starts) == 1000
        cap.records.clear()
        gc.collect()
        assert [sys.getrefcount(o) for o in watched] == before
        assert sys.getallocatedblocks() - blocks < 200


def test_request_send_notes_status_and_last_chunk() -> None:
    sent: list[Any] = []

    class Run:
        status: Any = None
        done_ns: Any = None

    run = Run()
    send = asgi.watch(run, sent.append)  # type: ignore[arg-type]
    send({"type": "http.response.start", "status": 201})
    assert run.status == 201 and run.done_ns is None
    send({"type": "http.response.body", "body": b"a", "more_body": True})
    assert run.done_ns is None
    send({"type": "http.response.body", "body": b"b"})
    done = run.done_ns
    assert isinstance(done, int)
    send({"type": "http.response.body", "body": b""})
    assert run.done_ns == done  # the first last chunk counts
    assert len(sent) == 4
    with pytest.raises(KeyError):
        send({"status": 1})  # as the Python: a message without a type is the app's mistake
    with pytest.raises(TypeError):
        send()  # type: ignore[call-arg]


@pytest.mark.parametrize("which", ["compiled", "python"])
def test_a_file_the_server_sends_by_path_is_the_last_chunk(which: str) -> None:
    # servers with the ASGI pathsend extension (Granian) get a FileResponse as one
    # http.response.pathsend message, no body message: the request was recorded incomplete
    class Run:
        status: Any = None
        done_ns: Any = None

    run = Run()
    watch = asgi.watch if which == "compiled" else asgi._watch
    send = watch(run, [].append)  # type: ignore[arg-type]
    send({"type": "http.response.start", "status": 200})
    send({"type": "http.response.pathsend", "path": "/srv/report.pdf"})
    assert isinstance(run.done_ns, int)


def test_a_file_response_under_pathsend_is_metered_complete(tmp_path: Any) -> None:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    report = tmp_path / "report.txt"
    report.write_text("numbers")
    app = Starlette(routes=[Route("/report", lambda request: FileResponse(report))])
    middleware = asgi.DripMiddleware(app, customer=lambda request: "cus_1")
    scope = {"type": "http", "method": "GET", "path": "/report", "root_path": "",
             "headers": [], "extensions": {"http.response.pathsend": {}}}  # fmt: skip
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    with drip.testing.capture() as cap:
        asyncio.run(middleware(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    [event] = cap.events
    assert "incomplete" not in (event.metadata or {})
