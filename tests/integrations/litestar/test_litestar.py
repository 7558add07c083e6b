"""``DripMiddleware`` on a real Litestar app, through Litestar's TestClient, checked on the server.

Both ways a Litestar user adds it: in the app's ``middleware`` (Litestar runs it after routing,
per route handler) and around the app (before routing). Either way a run is named by the
route's template, not ``<unmatched>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("litestar")

from drip.integrations.asgi import DripMiddleware
from litestar import Litestar, Request, Router, get
from litestar.middleware import DefineMiddleware
from litestar.params import FromPath
from litestar.response import Stream
from litestar.testing import TestClient

import drip
from drip import Drip, RunStatus


@drip.metered("db.queries")
def query(n: int) -> int:
    return n


@drip.metered("stream.chunks")
async def chunk(i: int) -> str:
    await asyncio.sleep(0.01)
    return f"chunk {i}\n"


@get("/items/{item_id:int}")
async def item(item_id: FromPath[int]) -> dict[str, int]:
    return {"item": query(item_id)}


@get("/stream")
async def stream() -> Stream:
    async def body() -> AsyncIterator[str]:
        for i in range(3):
            yield await chunk(i)

    return Stream(body())


@get("/boom")
async def boom() -> None:
    query(1)
    raise LookupError("no such item")


@get("/health")
async def health() -> str:
    return "ok"


def header_customer(request: Any) -> dict[str, str] | None:
    external = request.headers.get("x-customer")
    return None if external is None else {"external_customer_id": external}


def make_app(how: str) -> Any:
    handlers = [Router("/v1", route_handlers=[item]), stream, boom, health]
    options: dict[str, Any] = {"customer": header_customer, "exclude": ["/health"]}
    if how == "inside":  # Litestar's own way: middleware=[...], run after routing
        return Litestar(handlers, middleware=[DefineMiddleware(DripMiddleware, **options)])
    return DripMiddleware(Litestar(handlers), **options)  # around the app, before routing


@pytest.fixture(params=["inside", "around"])
def how(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def http(how: str) -> Iterator[TestClient[Any]]:
    with TestClient(make_app(how)) as client:
        yield client


def test_litestar_requests_are_counted_exactly_and_named_by_their_route(
    live: Drip, http: TestClient[Any], how: str, slug: Callable[[str], str]
) -> None:
    externals = [f"lit_{i}" for i in range(5)]
    for i in range(200):
        response = http.get(f"/v1/items/{i}", headers={"x-customer": externals[i % 5]})
        assert response.json() == {"item": i}
    assert http.get("/health", headers={"x-customer": externals[0]}).text == "ok"
    assert http.get("/v1/items/3").json() == {"item": 3}  # no customer: served, not metered
    assert http.get("/nowhere", headers={"x-customer": externals[0]}).status_code == 404
    assert live.flush(30).ok
    for external in externals:
        customer = live.create_customer(external_customer_id=external).id
        [calls] = live.get_usage_summary(customer_id=customer, meter="api_calls").meters
        [queries] = live.get_usage_summary(customer_id=customer, meter="db.queries").meters
        runs = live.list_runs(customer_id=customer, limit=1000).data
        names = {slug(r.workflow_id) for r in runs}
        # around the app its 404 is metered too, as an unmatched route; inside, Litestar
        # answers a request that reaches no route before any route's middleware runs
        if external == externals[0] and how == "around":
            assert calls.run_events == 41 and len(runs) == 41
            assert names == {"GET /v1/items/{item_id}", "GET <unmatched>"}
        else:
            assert calls.run_events == 40 and len(runs) == 40
            assert names == {"GET /v1/items/{item_id}"}
        assert queries.run_events == 40  # the handler's metered calls, in the request runs
        assert {r.status for r in runs} == {RunStatus.COMPLETED}


def test_litestar_stream_and_exception(live: Drip, http: TestClient[Any]) -> None:
    customer = live.create_customer(external_customer_id="lit_stream").id
    response = http.get("/stream", headers={"x-customer": "lit_stream"})
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    assert http.get("/boom", headers={"x-customer": "lit_stream"}).status_code == 500
    assert live.flush(30).ok
    runs = {r.status: r for r in live.list_runs(customer_id=customer, limit=10).data}
    streamed = live.get_run_timeline(runs[RunStatus.COMPLETED].id)
    assert streamed.workflow_name == "GET /stream"
    [request] = [e for e in streamed.events if e.meter == "api_calls"]
    chunks = [e for e in streamed.events if e.meter == "stream.chunks"]
    assert len(chunks) == 3 and request.timestamp >= max(e.timestamp for e in chunks)
    assert (request.metadata or {})["route"] == "/stream"
    failed = live.get_run_timeline(runs[RunStatus.FAILED].id)
    assert failed.workflow_name == "GET /boom"
    assert [e.meter for e in failed.events].count("db.queries") == 1


def test_the_customer_callable_gets_a_starlette_request_under_litestar(live: Drip) -> None:
    seen: list[Any] = []

    def customer(request: Any) -> None:
        seen.append((type(request).__mro__, request.url.path, request.headers["x-customer"]))

    app = Litestar([item], middleware=[DefineMiddleware(DripMiddleware, customer=customer)])
    with TestClient(app) as client:
        assert client.get("/items/5", headers={"x-customer": "x"}).json() == {"item": 5}
    [(mro, path, header)] = seen
    assert "starlette.requests.Request" in {f"{c.__module__}.{c.__qualname__}" for c in mro}
    assert not any(issubclass(c, Request) for c in mro)
    assert (path, header) == ("/items/5", "x")
    assert live.flush(30).ok and live.stats().recorded == 0
