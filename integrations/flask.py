"""Meter every request of a Flask application.

::

    from flask import Flask, request
    from drip.integrations.flask import DripFlask

    app = Flask(__name__)
    DripFlask(app, customer=lambda request: request.headers.get("x-customer-id"))
    # or, with an application factory:  drip_flask = DripFlask(customer=...); drip_flask.init_app(app)

Each metered request is one run (workflow ``"GET /items/<int:item_id>"`` by default, the URL
rule with the mount's ``SCRIPT_NAME``) holding one ``api_calls`` event, recorded when the
response is complete: for a streamed response, when its generator has finished.

How: a ``before_request`` hook asks the ``customer`` callable (it receives ``flask.request``) and
opens the run; the application's WSGI callable is wrapped so that the run ends when the response
is complete. A body the view made whole (not a generator) is complete when the application
returns it, so the run ends there: whether the server, or a test client, closes it later does not
matter. A streamed body ends the run after its last chunk has been handed to the server (or,
when the server closes it before, at ``close``: the client left, the event says ``incomplete``).
``after_request`` and ``teardown_request`` both run *before* a streamed body is generated, which
is why they are not its end; and because the run stays open in the serving thread's context
until then, the stream's generator records into it too. An exception a view raises ends the run
FAILED, whether an ``errorhandler`` answers it (with any status, which is recorded) or not;
``abort(404)`` and other ``HTTPException`` are answers, their 4xx COMPLETED. Flask's own error
handling (``errorhandler``, the 500 page, ``PROPAGATE_EXCEPTIONS``) is untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._requires import requires
from ._web import OpenRequest, RequestMeter, finish_request, open_request

flask = requires("flask", extra="flask")
werkzeug_exceptions = requires("werkzeug.exceptions", extra="flask")

__all__ = ["DripFlask"]

#: where the request's run waits for the end of the response, in the WSGI environ
ENVIRON_KEY = "drip.request_run"
#: set in the WSGI environ when the view's response body was made whole (not streamed)
WHOLE_KEY = "drip.whole_body"


class DripFlask:
    """Flask extension: one run per metered request, one ``meter`` event once it is sent.

    Arguments as for ``drip.integrations.asgi.DripMiddleware``; ``customer`` receives
    ``flask.request`` and returns a customer id, a mapping, or None to leave it unmetered
    (an ``async def`` one is run as Flask runs async views: ``pip install "flask[async]"``).
    """

    def __init__(
        self,
        app: Any = None,
        *,
        customer: Callable[[Any], Any],
        workflow: str | None = None,
        meter: str = "api_calls",
        quantity: float = 1,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        trust_baggage: bool = False,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self._meter = RequestMeter(
            customer=customer, workflow=workflow, meter=meter, quantity=quantity,
            include=include, exclude=exclude, trust_baggage=trust_baggage,
        )  # fmt: skip
        self._request_id_header = request_id_header
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Install on ``app``: its request hooks, and the WSGI wrapper that ends each run.

        Once per app: again with this extension does nothing; another ``DripFlask`` raises
        (each request would open two runs, one never ended)."""
        installed = app.extensions.get("drip")
        if installed is self:
            return
        if installed is not None:
            raise RuntimeError(
                "a DripFlask is installed on this app already: one per app (pass every "
                "option to that one)"
            )
        app.before_request(self._before)
        app.after_request(self._after)
        app.teardown_request(self._teardown)
        app.wsgi_app = _EndRuns(app.wsgi_app)
        app.handle_user_exception = _noting(app.handle_user_exception)
        app.extensions["drip"] = self

    def _before(self) -> None:
        request = flask.request
        rule = request.url_rule
        route = None if rule is None else request.script_root + rule.rule
        meter = self._meter
        if not meter.wanted(route, request.script_root + request.path, request.script_root):
            return
        headers = request.headers
        request_id = headers.get(self._request_id_header)
        carried = meter.carried(headers.get("baggage"))
        if carried is not None:
            request_run = meter.open(None, request.method, route, request_id, carried)
        else:
            try:
                customer = meter.customer(request)
                if inspect.isawaitable(customer):  # async def: run as Flask runs async views
                    customer = _awaited(customer)
            except Exception as exc:
                meter.unmetered(exc, "the customer callable raised")
                return
            request_run = open_request(meter, customer, request.method, route, request_id)
        if request_run is not None:
            request.environ[ENVIRON_KEY] = request_run

    @staticmethod
    def _after(response: Any) -> Any:
        # a body made whole (a list, not a generator): complete once the application returns
        if response.is_sequence:
            environ = flask.request.environ
            if ENVIRON_KEY in environ:
                environ[WHOLE_KEY] = True
        return response

    @staticmethod
    def _teardown(exc: BaseException | None) -> None:
        # runs before a streamed body exists: only remember how the view ended
        if exc is not None:
            request_run = flask.request.environ.get(ENVIRON_KEY)
            if request_run is not None:
                request_run.error = exc


def _awaited(awaitable: Any) -> Any:
    """What an async customer callable answers, awaited as Flask awaits an async view
    (``app.ensure_sync``: asgiref, Flask's ``async`` extra, which it names when missing)."""

    async def waiting() -> Any:
        return await awaitable

    try:
        return flask.current_app.ensure_sync(waiting)()
    except BaseException:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started: no "was never awaited" on top of the error
        raise


def _noting(handle: Callable[[Exception], Any]) -> Callable[[Exception], Any]:
    """``app.handle_user_exception``, first noting a view's exception on its request's run: one
    an ``errorhandler`` answers (with any status) ends the run FAILED, as one nothing answers
    does. Not an ``HTTPException`` (``abort(404)``): its status decides, 4xx COMPLETED."""

    def handle_user_exception(exc: Exception) -> Any:
        if not isinstance(exc, werkzeug_exceptions.HTTPException) and flask.has_request_context():
            request_run = flask.request.environ.get(ENVIRON_KEY)
            if request_run is not None and request_run.error is None:
                request_run.error = exc
        return handle(exc)

    return handle_user_exception


class _EndRuns:
    """Wraps ``app.wsgi_app``: a request's run ends when the server closes its response."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def watch(status: str, headers: Any, exc_info: Any = None) -> Any:
            request_run = environ.get(ENVIRON_KEY)
            if request_run is not None:
                request_run.status = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, watch)
        except BaseException as exc:  # PROPAGATE_EXCEPTIONS: the server sees it, as without us
            request_run = environ.pop(ENVIRON_KEY, None)
            if request_run is not None:
                finish_request(request_run, exc)
            raise
        request_run = environ.pop(ENVIRON_KEY, None)
        if request_run is None:
            return body
        if environ.pop(WHOLE_KEY, False):  # complete now; ended here, in its own context
            request_run.response_done()
            finish_request(request_run, request_run.error)
            return body
        return _Body(body, request_run)


class _Body:
    """A streamed response body, passed through; its last chunk (or an earlier ``close``)
    ends the request's run."""

    def __init__(self, body: Iterable[bytes], request_run: OpenRequest) -> None:
        self._body = body
        self._request_run = request_run

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except Exception as exc:  # the body raised: FAILED (ended at ``close``), as a view
            self._request_run.error = exc
            raise
        request_run = self._request_run
        request_run.response_done()
        finish_request(request_run, request_run.error)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            request_run = self._request_run
            finish_request(request_run, request_run.error)
