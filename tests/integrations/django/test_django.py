"""``DripMiddleware`` on a real Django project, through Django's test clients (sync and async)."""

from __future__ import annotations

import asyncio
import sys
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("django")

import django
from django.conf import settings

import drip
from drip import Drip, RunStatus

urls = types.ModuleType("drip_test_django_urls")
sys.modules[urls.__name__] = urls

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=urls.__name__,
        MIDDLEWARE=["drip.integrations.django.DripMiddleware"],
        DRIP_CUSTOMER=f"{urls.__name__}.customer",
        DRIP_MIDDLEWARE={"exclude": ["/health/"]},
        USE_TZ=True,
    )
    django.setup()

from django.core.exceptions import PermissionDenied, SuspiciousOperation  # noqa: E402
from django.core.signals import got_request_exception  # noqa: E402 (after settings.configure)
from django.http import (  # noqa: E402 (after settings.configure)
    Http404,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.test import AsyncClient, Client, override_settings  # noqa: E402 (after settings.configure)
from django.urls import path  # noqa: E402 (after settings.configure)
from django.utils.asyncio import async_unsafe  # noqa: E402 (after settings.configure)


@drip.metered("db.queries")
def query(n: int) -> int:
    return n


@drip.metered("stream.chunks")
def chunk(i: int) -> str:
    time.sleep(0.02)
    return f"chunk {i}\n"


def customer(request: Any) -> str | None:
    return request.headers.get("x-customer")


def item(request: Any, item_id: int) -> JsonResponse:
    return JsonResponse({"item": query(item_id)})


async def async_item(request: Any, item_id: int) -> JsonResponse:
    await asyncio.sleep(0)
    return JsonResponse({"item": query(item_id)})


def stream(request: Any) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        for i in range(3):
            yield chunk(i)

    return StreamingHttpResponse(body())


async def async_stream(request: Any) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[str]:
        for i in range(3):
            await asyncio.sleep(0.02)
            yield f"chunk {query(i)}\n"

    return StreamingHttpResponse(body())


def boom(request: Any) -> HttpResponse:
    query(1)
    raise LookupError("no such item")


def refused(request: Any, why: str) -> HttpResponse:
    query(1)
    if why == "missing":
        raise Http404("no such item")  # as get_object_or_404 does
    if why == "forbidden":
        raise PermissionDenied("not yours")
    raise SuspiciousOperation("odd")


def broken_stream(request: Any) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        yield chunk(0)
        raise RuntimeError("feed down")

    return StreamingHttpResponse(body())


def unavailable(request: Any) -> HttpResponse:
    return HttpResponse("later", status=503)


def health(request: Any) -> HttpResponse:
    return HttpResponse("ok")


def handler500(request: Any) -> HttpResponse:
    return HttpResponse("handled by handler500", status=500)


async def async_customer(request: Any) -> str | None:
    await asyncio.sleep(0)
    return request.headers.get("x-customer")


def db_customer(request: Any) -> str | None:
    return _look_up(request.headers.get("x-customer"))


@async_unsafe
def _look_up(key: str | None) -> str | None:
    return key  # stands for an ORM query: Django refuses it in an event loop's thread


urls.customer = customer  # type: ignore[attr-defined]
urls.db_customer = db_customer  # type: ignore[attr-defined]
urls.async_customer = async_customer  # type: ignore[attr-defined]
urls.handler500 = handler500  # type: ignore[attr-defined]
urls.urlpatterns = [  # type: ignore[attr-defined]
    path("v1/items/<int:item_id>/", item),
    path("async/items/<int:item_id>/", async_item),
    path("stream/", stream),
    path("refused/<str:why>/", refused),
    path("broken-stream/", broken_stream),
    path("async/stream/", async_stream),
    path("boom/", boom),
    path("unavailable/", unavailable),
    path("health/", health),
]


def runs_of(live: Drip, customer_id: str) -> list[Any]:
    assert live.flush(30).ok
    return live.list_runs(customer_id=customer_id, limit=1000).data


def test_200_requests_from_5_customers_are_counted_exactly(
    live: Drip, customers: list[str], slug: Callable[[str], str]
) -> None:
    client = Client()
    for i in range(200):
        response = client.get(f"/v1/items/{i}/", headers={"x-customer": customers[i % 5]})
        assert response.json() == {"item": i}
    assert live.flush(30).ok
    for cid in customers:
        [meter] = live.get_usage_summary(customer_id=cid, meter="api_calls").meters
        assert meter.run_events == 40 and meter.quantity == 40
        [queries] = live.get_usage_summary(customer_id=cid, meter="db.queries").meters
        assert queries.run_events == 40
        runs = live.list_runs(customer_id=cid, limit=1000).data
        assert len(runs) == 40 and {r.status for r in runs} == {RunStatus.COMPLETED}
        assert {slug(r.workflow_id) for r in runs} == {"GET /v1/items/<int:item_id>/"}


def test_a_stream_is_metered_after_its_content(live: Drip, customers: list[str]) -> None:
    response = Client().get("/stream/", headers={"x-customer": customers[0], "x-request-id": "r1"})
    assert b"".join(response.streaming_content) == b"chunk 0\nchunk 1\nchunk 2\n"
    response.close()
    [run] = runs_of(live, customers[0])
    assert live.get_run(run.id).external_run_id == "r1"
    timeline = live.get_run_timeline(run.id)
    assert len([e for e in timeline.events if e.meter == "stream.chunks"]) == 3
    [request_event] = [e for e in timeline.events if e.meter == "api_calls"]
    meta = request_event.metadata or {}
    assert meta["duration_ms"] >= 60 and meta["route"] == "/stream/"
    assert "incomplete" not in meta


def test_a_stream_the_test_client_never_reads_is_no_parent_of_the_next_request(
    live: Drip, customers: list[str]
) -> None:
    client = Client()
    unread = client.get("/stream/", headers={"x-customer": customers[0]})
    assert unread.status_code == 200  # its content is never read: its run stays open here
    for i in range(3):
        assert client.get(f"/v1/items/{i}/", headers={"x-customer": customers[1]}).json()
    runs = runs_of(live, customers[1])
    assert len(runs) == 3 and {r.status for r in runs} == {RunStatus.COMPLETED}
    assert {r.parent_run_id for r in runs} == {None}  # not children of the other customer's
    unread.close()  # the run ends when the response does, marked incomplete
    [ended] = runs_of(live, customers[0])
    assert ended.status is RunStatus.COMPLETED
    [event] = live.get_run_timeline(ended.id).events
    assert (event.metadata or {}).get("incomplete") is True


def test_an_exception_fails_the_run_and_reaches_djangos_handler(
    live: Drip, customers: list[str]
) -> None:
    reached: list[Any] = []

    def receiver(sender: Any, request: Any = None, **kwargs: Any) -> None:
        reached.append(sys.exc_info()[0])

    got_request_exception.connect(receiver)
    try:
        response = Client(raise_request_exception=False).get(
            "/boom/", headers={"x-customer": customers[1]}
        )
    finally:
        got_request_exception.disconnect(receiver)
    assert response.status_code == 500 and response.content == b"handled by handler500"
    assert reached == [LookupError]
    [run] = runs_of(live, customers[1])
    details = live.get_run(run.id)
    assert details.status is RunStatus.FAILED and details.error_code == "LookupError"
    assert details.totals.event_count == 2


def test_5xx_excluded_and_anonymous(live: Drip, customers: list[str]) -> None:
    client = Client()
    assert client.get("/unavailable/", headers={"x-customer": customers[2]}).status_code == 503
    [run] = runs_of(live, customers[2])
    assert live.get_run(run.id).error_code == "HTTPServerError"
    assert client.get("/health/", headers={"x-customer": customers[3]}).content == b"ok"
    assert client.get("/v1/items/1/").json() == {"item": 1}  # no customer: served, unmetered
    assert client.get("/nowhere/", headers={"x-customer": customers[3]}).status_code == 404
    runs = runs_of(live, customers[3])
    assert len(runs) == 1  # the 404 is metered as "<unmatched>"; /health/ is excluded
    [event] = live.get_run_timeline(runs[0].id).events
    assert (event.metadata or {})["route"] == "<unmatched>"


async def test_async_views_and_streams(live: Drip, customers: list[str]) -> None:
    client = AsyncClient()
    response = await client.get("/async/items/7/", headers={"x-customer": customers[4]})
    assert response.json() == {"item": 7}
    response = await client.get("/async/stream/", headers={"x-customer": customers[4]})
    assert b"".join([c async for c in response.streaming_content]) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert (await asyncio.to_thread(live.flush, 30)).ok
    runs = live.list_runs(customer_id=customers[4], limit=10).data
    assert len(runs) == 2
    counts = sorted(live.get_run(r.id).totals.event_count for r in runs)
    assert counts == [2, 4]  # query + request; three queries in the stream + request


async def test_an_async_stream_closed_unread_ends_its_run_incomplete(
    live: Drip, customers: list[str]
) -> None:
    response = await AsyncClient().get("/async/stream/", headers={"x-customer": customers[3]})
    assert response.status_code == 200
    response.close()  # what Django's ASGI handler does once the response is over
    assert (await asyncio.to_thread(live.flush, 30)).ok
    [run] = live.list_runs(customer_id=customers[3], limit=10).data
    assert run.status is RunStatus.COMPLETED
    [event] = live.get_run_timeline(run.id).events
    assert event.meter == "api_calls" and (event.metadata or {}).get("incomplete") is True


def test_settings_mistakes_are_improperly_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured
    from drip.integrations.django import DripMiddleware

    with override_settings(DRIP_CUSTOMER=None), pytest.raises(ImproperlyConfigured, match="DRIP"):
        DripMiddleware(lambda r: r)
    with (
        override_settings(DRIP_MIDDLEWARE={"exclud": []}),
        pytest.raises(ImproperlyConfigured, match="exclud"),
    ):
        DripMiddleware(lambda r: r)


@pytest.mark.parametrize("trust", [True, False])
def test_trusted_baggage_continues_the_callers_run(
    live: Drip, customers: list[str], trust: bool
) -> None:
    from drip.context import inject

    with (
        override_settings(DRIP_MIDDLEWARE={"trust_baggage": trust}),
        drip.run("caller", customer_id=customers[0]) as caller,
    ):
        headers = dict(inject({}))
        response = Client().get("/v1/items/9/", headers={"x-customer": customers[1], **headers})
    assert response.json() == {"item": 9}
    mine = runs_of(live, customers[0])
    theirs = runs_of(live, customers[1])
    assert [r.id for r in mine] == [caller.id]
    if trust:
        assert theirs == []
        assert live.get_run(caller.id).totals.event_count == 2  # B's request and query
    else:
        assert len(theirs) == 1 and live.get_run(caller.id).totals.event_count == 0


def wsgi_get(path: str, headers: dict[str, str]) -> bytes:
    """One GET through Django's WSGI handler as a WSGI server does it: call, iterate, close,
    all in this thread (gunicorn's sync worker)."""
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    setup_testing_defaults(environ)
    environ["HTTP_HOST"] = "testserver"
    result = WSGIHandler()(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        result.close()


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_an_async_stream_under_wsgi_leaves_nothing_behind_in_the_thread(
    live: Drip, customers: list[str]
) -> None:
    # Django consumes an async stream under WSGI in another context (async_to_sync): the run
    # ended there, but this thread stayed inside it, so later requests' metered calls (with
    # no customer of their own) were billed to it and metered requests became its children
    assert wsgi_get("/async/stream/", {"x-customer": customers[0]}) == (
        b"chunk 0\nchunk 1\nchunk 2\n"
    )
    assert drip.context.current_run() is None and drip.context.current_customer_id() is None
    wsgi_get("/v1/items/1/", {})  # no customer: its query is not recorded
    wsgi_get("/v1/items/2/", {"x-customer": customers[1]})
    [streamed] = runs_of(live, customers[0])
    assert live.get_run(streamed.id).totals.event_count == 4  # three queries + the request
    [other] = runs_of(live, customers[1])
    assert other.parent_run_id is None


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_an_async_customer_callable_under_wsgi(live: Drip, customers: list[str]) -> None:
    # the sync middleware (WSGI: gunicorn, the test Client) got a coroutine from it and left
    # every request unmetered ("never awaited"); it is awaited here as Django runs async code
    with override_settings(DRIP_CUSTOMER=f"{urls.__name__}.async_customer"):
        client = Client()
        assert client.get("/v1/items/3/", headers={"x-customer": customers[2]}).json()
        assert wsgi_get("/stream/", {"x-customer": customers[2]}) == b"chunk 0\nchunk 1\nchunk 2\n"
        assert client.get("/v1/items/4/").json() == {"item": 4}  # None: served, unmetered
    runs = runs_of(live, customers[2])
    assert len(runs) == 2 and {r.status for r in runs} == {RunStatus.COMPLETED}


def test_4xx_exceptions_django_answers_complete_the_run_with_their_status(
    live: Drip, customers: list[str]
) -> None:
    # Http404 (get_object_or_404), PermissionDenied, SuspiciousOperation: Django answers them
    # with a 4xx as FastAPI answers HTTPException; those runs ended FAILED with the class
    client = Client(raise_request_exception=False)
    for why, status in (("missing", 404), ("forbidden", 403), ("odd", 400)):
        response = client.get(f"/refused/{why}/", headers={"x-customer": customers[1]})
        assert response.status_code == status
    runs = runs_of(live, customers[1])
    assert len(runs) == 3
    statuses = set()
    for run in runs:
        details = live.get_run(run.id)
        assert details.status is RunStatus.COMPLETED and details.error_code is None
        [event] = [e for e in live.get_run_timeline(run.id).events if e.meter == "api_calls"]
        statuses.add((event.metadata or {})["status_code"])
    assert statuses == {404, 403, 400}


def test_a_stream_whose_body_raises_fails_the_run(live: Drip, customers: list[str]) -> None:
    # as under ASGI (the exception leaves the application): it ended COMPLETED, incomplete
    with pytest.raises(RuntimeError, match="feed down"):
        wsgi_get("/broken-stream/", {"x-customer": customers[2]})
    [run] = runs_of(live, customers[2])
    details = live.get_run(run.id)
    assert details.status is RunStatus.FAILED and details.error_code == "RuntimeError"
    events = live.get_run_timeline(run.id).events
    [request_event] = [e for e in events if e.meter == "api_calls"]
    assert (request_event.metadata or {}).get("incomplete") is True
    assert [e.meter for e in events if e.meter != "api_calls"] == ["stream.chunks"]


def test_listed_twice_a_request_is_metered_once(live: Drip, customers: list[str]) -> None:
    # two runs (the inner a child of the outer) and two request events: billed twice
    twice = ["drip.integrations.django.DripMiddleware"] * 2
    with override_settings(MIDDLEWARE=twice):
        assert Client().get("/v1/items/8/", headers={"x-customer": customers[4]}).json()
    [run] = runs_of(live, customers[4])
    assert run.parent_run_id is None
    [meter] = live.get_usage_summary(customer_id=customers[4], meter="api_calls").meters
    assert meter.quantity == 1


async def test_a_sync_customer_callable_that_queries_the_database_under_asgi(
    live: Drip, customers: list[str]
) -> None:
    # the middleware runs async (ASGI) and called the sync callable in the event loop's
    # thread, where Django refuses the ORM (SynchronousOnlyOperation): every request unmetered
    with override_settings(DRIP_CUSTOMER=f"{urls.__name__}.db_customer"):
        client = AsyncClient()
        for i in range(3):
            response = await client.get(f"/async/items/{i}/", headers={"x-customer": customers[0]})
            assert response.json() == {"item": i}
    assert (await asyncio.to_thread(live.flush, 30)).ok
    runs = (await asyncio.to_thread(live.list_runs, customer_id=customers[0])).data
    assert len(runs) == 3
