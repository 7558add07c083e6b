"""Meter every request of an ASGI application: Starlette, FastAPI, Litestar, any ASGI app.

::

    from drip.integrations.asgi import DripMiddleware   # or drip.integrations.fastapi

    def customer(request):                              # sync or async; None = don't meter
        return request.headers.get("x-customer-id")

    app.add_middleware(DripMiddleware, customer=customer, exclude=["/health"])

Each metered request is one run (workflow ``"GET /items/{item_id}"`` by default) holding one
``api_calls`` event recorded after the last body chunk, so a streamed response is metered when
it has been sent; everything ``@drip.metered`` records in the handler lands in that run.

Why pure ASGI and not ``BaseHTTPMiddleware``: that one runs the application in another task
(context changes made there never come back) and returns as soon as the response *starts*, so
it would meter a streamed response before its body exists. Here the application runs in the
middleware's own context, ``send`` is watched for the final chunk, and the run ends after the
application returns, in the context it was opened in.

The lifespan passes through, watched: when the application has shut down (uvicorn runs this
after letting the requests in flight finish, then ends the process by re-raising SIGTERM,
without ``atexit``), every delivery is flushed before the server hears it.

The route template is found before the application runs (the router's own ``matches``, through
mounts), so it can name the run and be matched by ``include``/``exclude``. An ASGI app without a
Starlette-style or Litestar router gets no template: its requests are labelled
``<unmatched>`` (a raw path would be unbounded and may carry personal data), so give it a
``workflow=`` and match ``include``/``exclude`` against raw paths. The ``customer``
callable receives a Starlette ``Request``; it may read the body too (``await
request.json()``): what it read is handed to the application again, which would otherwise
wait for a body that ASGI delivers only once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from drip._compiled import speedups
from drip._delivery.lifecycle import flush_all

from ._requires import requires
from ._web import (
    COMPILED,
    OpenRequest,
    RequestMeter,
    finish_request,
    open_request,
)

requests = requires("starlette.requests", extra="fastapi", integration="asgi")
routing = requires("starlette.routing", extra="fastapi", integration="asgi")
datastructures = requires("starlette.datastructures", extra="fastapi", integration="asgi")
to_thread = requires("anyio.to_thread", extra="fastapi", integration="asgi")
exceptions = requires("starlette.exceptions", extra="fastapi", integration="asgi")
exception_layer = requires("starlette.middleware.exceptions", extra="fastapi", integration="asgi")

__all__ = ["DripMiddleware"]

#: set in the scope of a request a ``DripMiddleware`` meters: the request's ``OpenRequest``
SCOPE_KEY = "drip.request_run"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class DripMiddleware:
    """Pure ASGI middleware: one run per metered request, one ``meter`` event when it is sent.

    ``customer(request)`` (sync or async) returns a customer id, a mapping with
    ``customer_id`` or ``external_customer_id`` (your own id: the server finds or creates the
    customer), or None to leave the request unmetered. ``include``/``exclude`` take route
    patterns (``fnmatch`` style, compared with the route template; with the raw path only
    when no route matched). ``request_id_header`` names the header whose value becomes the
    run's ``external_run_id``. With ``trust_baggage=True`` a request
    carrying drip baggage (``drip.context.inject`` on the caller's side) continues the caller's
    run instead of opening its own: only for callers you trust, since the baggage names the
    customer to bill.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        customer: Callable[[Any], Any],
        workflow: str | None = None,
        meter: str = "api_calls",
        quantity: float = 1,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        trust_baggage: bool = False,
        request_id_header: str = "x-request-id",
    ) -> None:
        self.app = app
        self._meter = RequestMeter(
            customer=customer, workflow=workflow, meter=meter, quantity=quantity,
            include=include, exclude=exclude, trust_baggage=trust_baggage,
        )  # fmt: skip
        self._request_id = request_id_header.lower().encode("latin-1")
        _fail_on_handled(app)
        #: (app, method, path, root_path) -> (route template, metered or not): both are fixed
        #: for a path, so a hot endpoint is matched and filtered once
        self._routes: dict[tuple[Any, str, str, str], tuple[str | None, bool]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or SCOPE_KEY in scope:
            if scope["type"] == "lifespan":
                return await self.app(scope, receive, _lifespan(send))
            # or metered already, by a DripMiddleware around this one (a parent application's,
            # or this one added twice): one request, one run and one event
            return await self.app(scope, receive, send)
        # the request's run is opened here, not in a helper coroutine: one await less per
        # request (a sync customer callable, the common case, is never awaited)
        meter = self._meter
        path = scope.get("path", "")
        key = (scope.get("app"), scope.get("method", ""), path, scope.get("root_path", ""))
        known = self._routes.get(key)
        if known is None:
            template = route_template(scope, self.app)
            known = (template, meter.wanted(template, path, key[3]))
            if len(self._routes) < _ROUTES_MAX:  # paths carry ids: keep it bounded
                self._routes[key] = known
        route, wanted = known
        if not wanted:
            return await self.app(scope, receive, send)
        request_id = baggage = None
        id_header, trust = self._request_id, meter.trust_baggage
        for name, value in scope.get("headers", ()):
            if name == id_header:
                request_id = value.decode("latin-1")
            elif trust and name == b"baggage":
                text = value.decode("latin-1")
                baggage = text if baggage is None else f"{baggage},{text}"
        method = scope.get("method", "GET")
        carried = meter.carried(baggage) if baggage is not None else None
        if carried is not None:
            request_run = meter.open(None, method, route, request_id, carried)
        else:
            request = Request(scope, receive)
            try:
                result = meter.customer(request)
                if _awaitable(result):
                    result = await result
            except Exception as exc:
                meter.unmetered(exc, "the customer callable raised")
                return await self.app(scope, _given_back(request, receive), send)
            if not _CHEAP or request._received is not None:  # it read the body (rare)
                receive = _given_back(request, receive)
            request_run = open_request(meter, result, method, route, request_id)
        if request_run is None:
            return await self.app(scope, receive, send)
        scope[SCOPE_KEY] = request_run
        try:
            await self.app(scope, receive, watch(request_run, send))
        except BaseException as exc:
            finish_request(request_run, exc)
            raise
        # ``error``: what an exception handler of the application answered (``_fail_on_handled``)
        finish_request(request_run, request_run.error)


def _fail_on_handled(app: Any) -> None:
    """Make the exceptions the application's own handlers answer end their run FAILED.

    Starlette and FastAPI run ``@app.exception_handler(SomeError)`` below this middleware
    (Starlette's ``ExceptionMiddleware``), so the exception never reaches it, only the handler's
    response: a handler answering 418 would end the run COMPLETED. Each handler of that layer
    (found under ``app`` through ``.app``, already built when this middleware is) is wrapped
    once to note the exception on the request's run; the handler runs as before, and its status
    is recorded. Not for the answers a framework makes of a client's error: ``HTTPException``
    (its status decides, 4xx COMPLETED) and FastAPI's request validation errors (422).
    """
    layer = app
    for _ in range(32):  # the middleware stack below this one; bounded
        handlers = getattr(layer, "_exception_handlers", None)
        if isinstance(layer, exception_layer.ExceptionMiddleware) and isinstance(handlers, dict):
            for kind, handler in list(handlers.items()):
                if _fails(kind) and not hasattr(handler, "__drip_handler__"):
                    handlers[kind] = _noting(handler)
            return
        layer = getattr(layer, "app", None)
        if layer is None:
            return


def _fails(kind: Any) -> bool:
    """Whether an exception ``kind`` a handler answers is a failure (see ``_fail_on_handled``)."""
    if not isinstance(kind, type) or not issubclass(kind, BaseException):
        return False  # a status code: Starlette's handlers of HTTPException by status
    if issubclass(kind, exceptions.HTTPException):
        return False
    return not (kind.__module__.startswith("fastapi") and "RequestValidation" in kind.__name__)


def _noting(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler``, noting the exception it answers on the request's run; as sync or async as
    it is (Starlette runs a sync handler in its thread pool)."""

    def note(conn: Any, exc: BaseException) -> None:
        request_run = getattr(conn, "scope", {}).get(SCOPE_KEY)
        if request_run is not None and request_run.error is None:
            request_run.error = exc

    wrapper: Callable[..., Any]
    if _is_async(handler):

        async def noting_async(conn: Any, exc: BaseException) -> Any:
            note(conn, exc)
            return await handler(conn, exc)

        wrapper = noting_async
    else:

        def noting(conn: Any, exc: BaseException) -> Any:
            note(conn, exc)
            return handler(conn, exc)

        wrapper = noting
    setattr(wrapper, "__drip_handler__", handler)  # noqa: B010  (a function's own mark)
    return wrapper


def _is_async(fn: Any) -> bool:
    """Whether Starlette awaits ``fn`` (a coroutine function, through partials, or an object
    whose ``__call__`` is one) or runs it in its thread pool."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  (the method, not whether it is callable)
    )


def _given_back(request: Any, receive: Receive) -> Receive:
    """``receive`` for the application: what the customer callable read of the body (ASGI
    hands it over once) first, so that the application reads it whole instead of waiting
    for it forever; ``receive`` itself when it read none (nearly always)."""
    received: list[Message] | None = getattr(request, "_received", None)  # kept by ``Request``
    if received is None:
        body = getattr(request, "_body", None)  # Starlette's own ``Request``: ``body()``
        if body is None:
            return receive
        received = [{"type": "http.request", "body": body, "more_body": False}]
    pending = list(received)

    async def replaying() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying


def _lifespan(send: Send) -> Send:
    """The ``send`` of the lifespan: once the application says it has shut down (uvicorn has
    let the requests in flight finish, and may next end the process without ``atexit``),
    every delivery is flushed before the server hears it, in a worker thread, bounded by
    ``shutdown_timeout``; what the server did not take is said then (``flush_all``).
    """

    async def sending(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await to_thread.run_sync(flush_all)
        await send(message)

    return sending


def _watch(request_run: OpenRequest, send: Send) -> Send:
    """The ``send`` the application gets: notes the status and when the last body chunk is
    handed on, then hands each message on (``drip._speedups.RequestSend``, compiled).

    A plain function returning ``send``'s awaitable, not a coroutine: no coroutine object per
    message (ASGI's ``send`` is any callable whose result is awaited).
    """

    def watching(message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.start":
            request_run.status = message["status"]  # even if the client has gone
        elif (
            (kind == "http.response.body" and not message.get("more_body"))
            or kind == "http.response.pathsend"  # a whole file the server sends (Granian)
        ) and request_run.done_ns is None:  # the last chunk is handed on now
            request_run.done_ns = _now()
        return send(message)

    return watching


#: what ``send`` the application gets (``_watch``, or its compiled twin)
watch: Callable[[OpenRequest, Send], Send] = speedups.RequestSend if COMPILED else _watch


def _awaitable(result: Any) -> bool:
    # the common answers are not: no ABC check (~2 us in situ) for them
    return result.__class__ not in _ANSWERS and inspect.isawaitable(result)


#: what a customer callable nearly always returns: an id, a mapping, None
_ANSWERS = frozenset((str, dict, type(None)))


_now = time.perf_counter_ns


def _cheap_request() -> type[Any]:
    """A subclass of Starlette's ``Request`` that is cheaper to make, or ``Request`` itself.

    The customer callable runs for every request and nearly always reads one header. Starlette
    sets five attributes per ``Request`` (through two ``__init__``) and finds its headers with
    a ``hasattr`` that fails; here ``__init__`` sets the scope and ``receive`` only, what
    Starlette would set per instance to the same value every time is a class attribute (an
    instance's own write, by Starlette's methods, replaces it), and ``headers`` is a plain
    check that makes Starlette's ``Headers`` without its ``__init__`` when the scope's headers
    are a list already (``Headers(scope=scope)`` would copy them into a new list and put that
    in the scope: the same sharing, one copy less). It is a real ``Request``: everything else
    is Starlette's. Should a Starlette version set something else per instance (found by
    making one), ``Request`` itself is used; likewise for ``Headers``.
    """
    base: type[Any] = requests.Request
    fields = dict(vars(base({"type": "http", "headers": []}, _cheap_request)))
    receive = fields.pop("_receive", None)
    scope = fields.pop("scope", None)
    immutable = all(v is None or v.__class__ is bool or inspect.isfunction(v)
                    for v in fields.values())  # fmt: skip
    if receive is not _cheap_request or scope is None or not immutable or "_headers" in fields:
        return base
    headers_type: type[Any] = datastructures.Headers
    plain_headers = vars(headers_type(scope={"headers": []})).keys() == {"_list"}

    class Request(base):  # type: ignore[misc]
        _headers = None
        #: what was read of the body, for the application (``_given_back``)
        _received: list[Message] | None = None

        def __init__(self, scope: Scope, receive: Receive) -> None:
            self.scope = scope
            self._read = receive

        async def _receive(self) -> Message:
            message = await self._read()
            if self._received is None:
                self._received = []
            self._received.append(message)
            return message

        @property
        def headers(self) -> Any:
            headers = self._headers
            if headers is None:
                raw = self.scope["headers"]
                if raw.__class__ is list and plain_headers:
                    headers = object.__new__(headers_type)
                    headers._list = raw
                else:
                    headers = headers_type(scope=self.scope)
                self._headers = headers
            return headers

    for name, value in fields.items():
        setattr(Request, name, value)
    Request.__qualname__ = Request.__name__ = base.__name__
    Request.__module__ = __name__
    return Request


#: what the customer callable receives (see ``_cheap_request``)
Request = _cheap_request()
#: ``Request`` is ``_cheap_request``'s: its ``_received`` says whether the body was read
_CHEAP = Request is not requests.Request
#: paths remembered per middleware (with their template and whether they are metered)
_ROUTES_MAX = 2048
#: (router, method, path, root_path) -> template; bounded, as paths carry ids and are unbounded
_templates: OrderedDict[tuple[int, str, str, str], str | None] = OrderedDict()
_TEMPLATES_MAX = 2048


def route_template(scope: Scope, app: Any = None) -> str | None:
    """The template of the route this request will reach (``/items/{item_id}``), or None.

    Asks the application's router (``scope["app"]``, set by Starlette, FastAPI and Litestar,
    else ``app``) the way it will ask itself, descending into mounts, whose prefix is kept.
    Litestar runs an app's middleware after routing, so there the template is in the scope
    already (``path_template``); around a Litestar app it is asked of Litestar's router.
    Answers are remembered per path (up to 2048, the oldest forgotten first), so a hot
    endpoint is matched once.
    """
    root_path: str = scope.get("root_path", "")
    routed = scope.get("path_template")
    if isinstance(routed, str):
        return root_path.rstrip("/") + routed
    target = scope.get("app") or app
    router = getattr(target, "router", None)
    routes = getattr(router, "routes", None)
    litestar = None if routes else getattr(target, "asgi_router", None)
    if not routes and litestar is None:
        return None
    key = (id(router if routes else litestar), scope.get("method", ""), scope.get("path", ""),
           root_path)  # fmt: skip
    try:
        return _templates[key]
    except KeyError:
        pass
    if routes:
        template = _match(routes, scope, root_path)
    else:
        template = _litestar_template(litestar, scope, root_path)
    _templates[key] = template
    if len(_templates) > _TEMPLATES_MAX:
        with contextlib.suppress(KeyError):  # another thread got there first
            _templates.popitem(last=False)
    return template


def _match(routes: Iterable[Any], scope: Scope, prefix: str) -> str | None:
    for route in routes:
        try:
            match, child = route.matches(scope)
        except Exception:  # a custom route that cannot answer: not ours to break
            continue
        if getattr(match, "name", None) != "FULL":
            continue
        if "route" in child:  # FastAPI's APIRoute names itself
            route = child["route"]
        elif hasattr(route, "effective_route_contexts"):  # FastAPI >= 0.16x: include_router
            return _included(route, scope, prefix)
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        inner = getattr(route, "routes", None)
        if inner:  # a mount: ask what is mounted, under the mount's prefix
            found = _match(inner, {**scope, **child}, child.get("root_path", prefix))
            if found is not None:
                return found
        if template is None:
            return None
        return prefix.rstrip("/") + str(template)
    return None


def _litestar_template(router: Any, scope: Scope, root_path: str) -> str | None:
    """The template Litestar's router finds for this request (what it will put in the scope as
    ``path_template``), asked the way Litestar asks it: the path without ``root_path``,
    normalised; None where Litestar will answer 404 or 405, or has no such router.
    """
    handle = getattr(router, "handle_routing", None)
    if handle is None:
        return None
    from litestar.utils import normalize_path  # Litestar is installed: this is its router

    path = scope.get("path", "")
    if root_path:
        path = path.split(root_path, 1)[-1]
    try:
        found = handle(path=normalize_path(path), method=scope.get("method"))
    except Exception:  # not found, method not allowed: Litestar answers it
        return None
    template = found[4] if isinstance(found, tuple) and len(found) > 4 else None
    return root_path.rstrip("/") + template if isinstance(template, str) else None


#: compiled path patterns of FastAPI's included routes, by route context
_compiled: dict[int, tuple[Any, Any]] = {}


def _included(router: Any, scope: Scope, prefix: str) -> str | None:
    """The template of a route of a FastAPI included router (its full path, prefixes and all).

    Its ``matches`` says only *that* one of its routes matches; which one is found here the
    way the router finds it: the first route context whose full path matches.
    """
    path = routing.get_route_path(scope)
    method = scope.get("method")
    partial = None
    for context in router.effective_route_contexts():
        entry = _compiled.get(id(context))
        if entry is None or entry[0] is not context:
            entry = _compiled[id(context)] = (context, routing.compile_path(context.path)[0])
        if entry[1].match(path) is None:
            continue
        methods = getattr(context.original_route, "methods", None)
        template = str(getattr(context, "path_format", None) or context.path)
        if not methods or method in methods:
            return prefix.rstrip("/") + template
        partial = partial or template
    return None if partial is None else prefix.rstrip("/") + partial
