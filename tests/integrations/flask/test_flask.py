"""``DripFlask`` on a real Flask app, through Flask's test client, checked on the real server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("flask")

import flask
from drip.integrations.flask import DripFlask
from flask import Blueprint, Flask, Response, request

import drip
from drip import Drip, RunStatus
from drip.context import current_run


@drip.metered("db.queries")
def query(n: int) -> int:
    return n


@drip.metered("stream.chunks")
def chunk(i: int) -> str:
    time.sleep(0.02)
    return f"chunk {i}\n"


def make_app(**options: Any) -> Flask:
    app = Flask(__name__)
    api = Blueprint("api", __name__, url_prefix="/v1")

    @api.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"item": query(item_id)}

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for i in range(3):
                yield chunk(i)

        return Response(body())

    @app.get("/boom")
    def boom() -> None:
        query(1)
        raise LookupError("no such item")

    @app.get("/unavailable")
    def unavailable() -> tuple[str, int]:
        return "later", 503

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.errorhandler(500)
    def handled(error: Any) -> tuple[dict[str, str], int]:
        return {"handled": type(error.original_exception).__name__}, 500

    app.register_blueprint(api)
    customer = options.pop("customer", lambda req: req.headers.get("x-customer"))
    DripFlask(app, customer=customer, **options)
    return app


def runs_of(live: Drip, customer: str) -> list[Any]:
    assert live.flush(30).ok
    return live.list_runs(customer_id=customer, limit=1000).data


def get(app: Flask, path: str, customer: str | None = None, **headers: str) -> Any:
    if customer:
        headers["x-customer"] = customer
    with app.test_client() as client:
        response = client.get(path, headers=headers)
        response.get_data()
        response.close()
        return response


def test_200_requests_from_5_customers_are_counted_exactly(
    live: Drip, customers: list[str], slug: Callable[[str], str]
) -> None:
    app = make_app()
    client = app.test_client()
    for i in range(200):
        with client.get(f"/v1/items/{i}", headers={"x-customer": customers[i % 5]}) as response:
            assert response.json == {"item": i}
    assert live.flush(30).ok
    for customer in customers:
        [meter] = live.get_usage_summary(customer_id=customer, meter="api_calls").meters
        assert meter.run_events == 40 and meter.quantity == 40
        [queries] = live.get_usage_summary(customer_id=customer, meter="db.queries").meters
        assert queries.run_events == 40
        runs = live.list_runs(customer_id=customer, limit=1000).data
        assert len(runs) == 40 and {r.status for r in runs} == {RunStatus.COMPLETED}
        assert {slug(r.workflow_id) for r in runs} == {"GET /v1/items/<int:item_id>"}


def test_a_stream_is_metered_when_its_generator_finishes(live: Drip, customers: list[str]) -> None:
    response = get(make_app(), "/stream", customers[1], **{"X-Request-ID": "req-9"})
    assert response.get_data(as_text=True) == "chunk 0\nchunk 1\nchunk 2\n"
    [run] = runs_of(live, customers[1])
    assert live.get_run(run.id).external_run_id == "req-9"
    timeline = live.get_run_timeline(run.id)
    assert timeline.status is RunStatus.COMPLETED
    assert len([e for e in timeline.events if e.meter == "stream.chunks"]) == 3
    [request_event] = [e for e in timeline.events if e.meter == "api_calls"]
    meta = request_event.metadata or {}
    assert meta["duration_ms"] >= 60 and meta["status_code"] == 200
    assert (meta["route"], meta["method"]) == ("/stream", "GET")
    assert "incomplete" not in meta


def test_an_exception_fails_the_run_and_reaches_flasks_handler(
    live: Drip, customers: list[str]
) -> None:
    response = get(make_app(), "/boom", customers[2])
    assert response.status_code == 500 and response.json == {"handled": "LookupError"}
    [run] = runs_of(live, customers[2])
    details = live.get_run(run.id)
    assert details.status is RunStatus.FAILED and details.error_code == "LookupError"
    assert details.totals.event_count == 2  # the query before the error, and the request


class Unicorn(Exception):
    pass


def test_an_exception_an_errorhandler_answers_4xx_still_fails_the_run(
    live: Drip, customers: list[str]
) -> None:
    """An ``errorhandler`` answering a view's exception with 418: the run is FAILED with the
    exception and the 418 recorded; ``abort(404)`` (an answer) stays COMPLETED."""
    app = Flask(__name__)

    @app.get("/unicorn")
    def unicorn() -> None:
        query(1)
        raise Unicorn("a unicorn")

    @app.get("/missing")
    def missing() -> None:
        flask.abort(404)

    @app.errorhandler(Unicorn)
    def on_unicorn(exc: Unicorn) -> tuple[dict[str, str], int]:
        return {"oops": str(exc)}, 418

    DripFlask(app, customer=lambda req: req.headers.get("x-customer"))
    answer = get(app, "/unicorn", customers[0])
    assert (answer.status_code, answer.json) == (418, {"oops": "a unicorn"})
    assert get(app, "/missing", customers[1]).status_code == 404
    [run] = runs_of(live, customers[0])
    details = live.get_run(run.id)
    assert details.status is RunStatus.FAILED and details.error_code == "Unicorn"
    events = {e.meter: e for e in live.get_run_timeline(run.id).events}
    assert set(events) == {"api_calls", "db.queries"}
    assert (events["api_calls"].metadata or {})["status_code"] == 418
    [answered] = runs_of(live, customers[1])
    assert answered.status is RunStatus.COMPLETED


def test_a_propagated_exception_still_fails_the_run(live: Drip, customers: list[str]) -> None:
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(LookupError, match="no such item"):
        get(app, "/boom", customers[0])
    [run] = runs_of(live, customers[0])
    assert run.status is RunStatus.FAILED


def test_5xx_fails_excluded_and_anonymous_record_nothing(live: Drip, customers: list[str]) -> None:
    app = make_app(exclude="/health")
    assert get(app, "/unavailable", customers[3]).status_code == 503
    [run] = runs_of(live, customers[3])
    assert live.get_run(run.id).error_code == "HTTPServerError"
    assert get(app, "/health", customers[4]).get_data() == b"ok"
    assert get(app, "/v1/items/2").json == {"item": 2}  # no customer: served, not metered
    assert runs_of(live, customers[4]) == []
    assert live.stats().recorded == 3  # the 503 run: start, request event, end


def test_a_failing_customer_callable_breaks_nothing(
    live: Drip, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req: Any) -> str:
        raise RuntimeError("customer lookup down")

    assert get(make_app(customer=broken), "/v1/items/4").json == {"item": 4}
    assert "customer callable raised" in caplog.text
    assert live.stats().recorded == 0


def test_init_app_for_factories(live: Drip, customers: list[str]) -> None:
    ext = DripFlask(customer=lambda req: customers[0], include=["/v1/*"])
    app = Flask(__name__)

    @app.get("/v1/ping")
    def ping() -> str:
        return request.path

    ext.init_app(app)
    assert app.extensions["drip"] is ext
    assert get(app, "/v1/ping").get_data() == b"/v1/ping"
    assert len(runs_of(live, customers[0])) == 1


@pytest.mark.parametrize("trust", [True, False])
def test_trusted_baggage_continues_the_callers_run(
    live: Drip, customers: list[str], trust: bool
) -> None:
    from drip.context import inject

    app = make_app(trust_baggage=trust)
    with drip.run("caller", customer_id=customers[0]) as caller:
        headers = dict(inject({}))
        response = get(app, "/v1/items/9", customers[1], **headers)
    assert response.json == {"item": 9}
    mine = runs_of(live, customers[0])
    theirs = runs_of(live, customers[1])
    if trust:  # one run, the caller's: B's request and its query are events of it
        assert [r.id for r in mine] == [caller.id] and theirs == []
        meters = sorted(e.meter or "" for e in live.get_run_timeline(caller.id).events)
        assert meters == ["api_calls", "db.queries"]
    else:  # the header's customer, in B's own run
        assert [r.id for r in mine] == [caller.id] and len(theirs) == 1
        assert live.get_run(caller.id).totals.event_count == 0


def test_responses_a_test_client_never_closes_are_counted_and_never_nest(
    live: Drip, customers: list[str]
) -> None:
    # the plain way to use Flask's test client: no ``with``, no close(); a WSGI server always
    # closes the response, the test client only when asked to
    client = make_app().test_client()
    for i in range(200):
        response = client.get(f"/v1/items/{i}", headers={"x-customer": customers[i % 5]})
        assert response.status_code == 200  # the body is not even read
    streamed = client.get("/stream", headers={"x-customer": customers[0]})
    assert streamed.get_data(as_text=True) == "chunk 0\nchunk 1\nchunk 2\n"  # read, not closed
    assert client.get("/v1/items/7", headers={"x-customer": customers[0]}).json == {"item": 7}
    assert current_run() is None  # no request's run is left open in this context
    assert live.flush(30).ok
    for n, customer in enumerate(customers):
        [meter] = live.get_usage_summary(customer_id=customer, meter="api_calls").meters
        expected = 42 if n == 0 else 40
        assert meter.run_events == expected
        runs = live.list_runs(customer_id=customer, limit=1000).data
        assert len(runs) == expected and {r.status for r in runs} == {RunStatus.COMPLETED}
        assert {r.parent_run_id for r in runs} == {None}  # none became the next one's parent


def test_a_stream_the_test_client_never_reads_is_no_parent_of_the_next_request(
    live: Drip, customers: list[str]
) -> None:
    client = make_app().test_client()
    unread = client.get("/stream", headers={"x-customer": customers[0]})
    assert unread.status_code == 200  # its body is never read: its run stays open here
    for i in range(3):
        assert client.get(f"/v1/items/{i}", headers={"x-customer": customers[1]}).json
    [open_run] = runs_of(live, customers[0])
    assert open_run.status is RunStatus.RUNNING
    runs = runs_of(live, customers[1])
    assert len(runs) == 3 and {r.status for r in runs} == {RunStatus.COMPLETED}
    assert {r.parent_run_id for r in runs} == {None}  # not children of the other customer's
    unread.close()  # the run ends when the response does
    [ended] = runs_of(live, customers[0])
    assert ended.status is RunStatus.COMPLETED


def test_a_stream_abandoned_by_the_client_ends_the_run_marked_incomplete(
    live: Drip, customers: list[str]
) -> None:
    app = make_app()
    with app.test_client() as client:
        response = client.get("/stream", headers={"x-customer": customers[0]}, buffered=False)
        assert next(iter(response.response)) == b"chunk 0\n"
        response.close()  # what the server does when the client goes away
    [run] = runs_of(live, customers[0])
    timeline = live.get_run_timeline(run.id)
    assert timeline.status is RunStatus.COMPLETED
    [request] = [e for e in timeline.events if e.meter == "api_calls"]
    assert (request.metadata or {}).get("incomplete") is True
    assert len([e for e in timeline.events if e.meter == "stream.chunks"]) == 1


def test_an_async_customer_callable(live: Drip, customers: list[str]) -> None:
    # Flask runs async views with asgiref; the callable's coroutine was taken for its answer
    # and every request left unmetered ("never awaited")
    pytest.importorskip("asgiref")

    async def lookup(req: Any) -> str | None:
        return req.headers.get("x-customer")

    app = make_app(customer=lookup)
    assert get(app, "/v1/items/6", customers[3]).json == {"item": 6}
    assert get(app, "/v1/items/7").json == {"item": 7}  # None: served, not metered
    [run] = runs_of(live, customers[3])
    assert run.status is RunStatus.COMPLETED


def test_a_stream_whose_body_raises_fails_the_run(live: Drip, customers: list[str]) -> None:
    # as under ASGI (the exception leaves the application): it ended COMPLETED, incomplete
    app = Flask(__name__)

    @app.get("/broken")
    def broken() -> Response:
        def body() -> Iterator[str]:
            yield chunk(0)
            raise RuntimeError("feed down")

        return Response(body())

    DripFlask(app, customer=lambda req: req.headers.get("x-customer"))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/broken", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "HTTP_X_CUSTOMER": customers[2]}  # fmt: skip
    result = app(environ, lambda status, headers, exc_info=None: None)
    try:  # as a WSGI server does: iterate, then close
        with pytest.raises(RuntimeError, match="feed down"):
            b"".join(result)
    finally:
        result.close()
    [run] = runs_of(live, customers[2])
    details = live.get_run(run.id)
    assert details.status is RunStatus.FAILED and details.error_code == "RuntimeError"
    [event] = [e for e in live.get_run_timeline(run.id).events if e.meter == "api_calls"]
    assert (event.metadata or {}).get("incomplete") is True


def test_patterns_hold_under_a_script_name(
    live: Drip, customers: list[str], slug: Callable[[str], str]
) -> None:
    # mounted at /api (SCRIPT_NAME, behind a proxy): the route is /api/health, and
    # exclude=["/health"] (make_app's) billed it
    app = make_app(exclude=["/health"])
    with app.test_client() as client:
        for path in ("/health", "/v1/items/5"):
            response = client.get(
                path, base_url="http://localhost/api", headers={"x-customer": customers[1]}
            )
            assert response.status_code == 200
    [run] = runs_of(live, customers[1])
    assert slug(run.workflow_id) == "GET /api/v1/items/<int:item_id>"


def test_installed_once_per_app(live: Drip, customers: list[str]) -> None:
    # twice on one app, each request opened two runs and ended one: the other stayed open in
    # the serving thread, and the next requests' runs became its children
    app = make_app()
    ext = app.extensions["drip"]
    ext.init_app(app)  # the same extension again: nothing
    with pytest.raises(RuntimeError, match="installed on this app already"):
        DripFlask(app, customer=lambda req: customers[4])
    for i in range(2):
        assert get(app, f"/v1/items/{i}", customers[3]).json == {"item": i}
    assert current_run() is None
    runs = runs_of(live, customers[3])
    assert len(runs) == 2 and {r.parent_run_id for r in runs} == {None}
    assert {r.status for r in runs} == {RunStatus.COMPLETED}
