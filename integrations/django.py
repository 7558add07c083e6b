"""Meter every request of a Django project, sync or async.

::

    # settings.py
    MIDDLEWARE = ["drip.integrations.django.DripMiddleware", *MIDDLEWARE]
    DRIP_CUSTOMER = "billing.customers.customer_for"   # def customer_for(request) -> str | None
    DRIP_MIDDLEWARE = {"exclude": ["/health/"]}         # optional: the ASGI middleware's options

Each metered request is one run (workflow ``"GET /items/<int:item_id>/"`` by default, the URL
pattern with ``SCRIPT_NAME``) holding one ``api_calls`` event, recorded when the response is
complete: for a ``StreamingHttpResponse``, when its content has been sent. A view exception ends
the run FAILED and then goes on to Django's own handling (``process_exception`` returns None, so
``handler500`` and ``DEBUG`` pages are untouched); one Django answers with a 4xx (``Http404``,
``PermissionDenied``) ends it COMPLETED with that status, as any 4xx.

The middleware is sync and async capable: under ASGI with async views it runs without a thread
hop. The ``customer`` callable may be ``async def`` either way (under WSGI it is awaited as
Django runs an async view there, with ``async_to_sync``); a sync one that queries the database
under ASGI (Django refuses that in the event loop: ``SynchronousOnlyOperation``) is run in a
thread from then on, as Django runs sync code there (``sync_to_async``). ``DRIP_MIDDLEWARE`` takes
``workflow``, ``meter``, ``quantity``, ``include``, ``exclude``, ``trust_baggage`` and
``request_id_header`` (default ``X-Request-ID``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ._requires import requires
from ._web import OpenRequest, RequestMeter, finish_request, open_request

django_conf = requires("django.conf", extra="django")
django_urls = requires("django.urls", extra="django")
django_exceptions = requires("django.core.exceptions", extra="django")
django_module_loading = requires("django.utils.module_loading", extra="django")
asgiref_sync = requires("asgiref.sync", extra="django")

__all__ = ["DripMiddleware"]

#: where the request's run is kept on ``request.META`` between the middleware's hooks
META_KEY = "drip.request_run"
_OPTIONS = {"workflow", "meter", "quantity", "include", "exclude", "trust_baggage",
            "request_id_header"}  # fmt: skip


class DripMiddleware:
    """Django middleware: one run per metered request, one ``meter`` event when it is sent."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._async = asgiref_sync.iscoroutinefunction(get_response)
        #: the customer callable is sync and needs a thread (async stack, the ORM in it)
        self._in_thread = False
        if self._async:
            asgiref_sync.markcoroutinefunction(self)
        settings = django_conf.settings
        path = getattr(settings, "DRIP_CUSTOMER", None)
        if not path:
            raise django_exceptions.ImproperlyConfigured(
                "drip.integrations.django.DripMiddleware needs DRIP_CUSTOMER in settings: the "
                "dotted path of a callable taking the request and returning a customer id "
                "(or None to leave the request unmetered)"
            )
        options = dict(getattr(settings, "DRIP_MIDDLEWARE", None) or {})
        unknown = set(options) - _OPTIONS
        if unknown:
            raise django_exceptions.ImproperlyConfigured(
                f"DRIP_MIDDLEWARE has unknown options {sorted(unknown)}; known: {sorted(_OPTIONS)}"
            )
        header = str(options.pop("request_id_header", "X-Request-ID"))
        self._request_id_key = "HTTP_" + header.upper().replace("-", "_")
        self._meter = RequestMeter(customer=django_module_loading.import_string(path), **options)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        if META_KEY in request.META:  # metered by the same middleware listed before: once
            return self.get_response(request)
        route, customer, carried = self._customer(request)
        if inspect.isawaitable(customer):  # an async def callable, under WSGI
            customer = self._await_customer(customer)
        request_run = self._open(request, route, customer, carried)
        if request_run is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            finish_request(request_run, exc)
            raise
        return _end_with(request_run, response, in_thread=True)

    async def __acall__(self, request: Any) -> Any:
        if META_KEY in request.META:  # metered by the same middleware listed before: once
            return await self.get_response(request)
        route, customer, carried = self._customer(request)
        if inspect.isawaitable(customer):
            try:
                customer = await customer
            except Exception as exc:
                self._meter.unmetered(exc, "the customer callable raised")
                customer = None
        request_run = self._open(request, route, customer, carried)
        if request_run is None:
            return await self.get_response(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            finish_request(request_run, exc)
            raise
        return _end_with(request_run, response)

    def _await_customer(self, customer: Any) -> Any:
        """What an async customer callable answers, awaited from sync code as Django runs an
        async view under WSGI (``async_to_sync``); None (the request unmetered) if it raises."""
        try:
            return asgiref_sync.async_to_sync(_awaited)(customer)
        except Exception as exc:
            self._meter.unmetered(exc, "the customer callable raised")
            return None

    def process_exception(self, request: Any, exception: Exception) -> None:
        """Remember the view's exception for the run; Django handles it as without us."""
        request_run = request.META.get(META_KEY)
        if request_run is not None:
            request_run.error = exception

    def _customer(self, request: Any) -> tuple[str | None, Any, Any]:
        """The request's route template, its customer (None: not metered), the carried run."""
        route = _route(request)
        script_name = request.META.get("SCRIPT_NAME", "")
        if not self._meter.wanted(route, script_name + request.path_info, script_name):
            return route, None, None
        carried = self._meter.carried(request.META.get("HTTP_BAGGAGE"))
        if carried is not None:
            return route, None, carried
        lookup = self._meter.customer
        if self._in_thread:
            return route, asgiref_sync.sync_to_async(lookup)(request), None
        try:
            return route, lookup(request), None
        except django_exceptions.SynchronousOnlyOperation as exc:
            if not self._async:
                self._meter.unmetered(exc, "the customer callable raised")
                return route, None, None
            # a sync callable that queries the database, called from the event loop (ASGI):
            # from now on in a thread, as Django runs sync code there (``sync_to_async``)
            self._in_thread = True
            return route, asgiref_sync.sync_to_async(lookup)(request), None
        except Exception as exc:
            self._meter.unmetered(exc, "the customer callable raised")
            return route, None, None

    def _open(
        self, request: Any, route: str | None, customer: Any, carried: Any
    ) -> OpenRequest | None:
        if customer is None and carried is None:
            return None
        meta = request.META
        method, request_id = request.method or "GET", meta.get(self._request_id_key)
        if carried is None:
            request_run = open_request(self._meter, customer, method, route, request_id)
        else:
            request_run = self._meter.open(customer, method, route, request_id, carried)
        if request_run is not None:
            meta[META_KEY] = request_run
        return request_run


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _route(request: Any) -> str | None:
    """The URL pattern this request resolves to (``/v1/items/<int:item_id>/``), or None."""
    try:
        match = django_urls.resolve(request.path_info, getattr(request, "urlconf", None))
    except django_urls.Resolver404:
        return None
    except Exception:  # the view will meet the same problem and report it: not ours
        return None
    return str(request.META.get("SCRIPT_NAME", "")).rstrip("/") + "/" + str(match.route)


def _end_with(request_run: OpenRequest, response: Any, in_thread: bool = False) -> Any:
    """End the run now, or, for a streamed response, once its content has been sent.

    ``in_thread``: the middleware ran sync (WSGI). An async stream is then consumed in another
    context (Django's ``async_to_sync``), where the run cannot be left: it ends at ``close``,
    which the server calls in the request's thread, so that thread leaves the run too.
    """
    request_run.status = response.status_code
    if request_run.error is not None and response.status_code < 500:
        # the view's exception was answered with a 4xx (Http404, PermissionDenied,
        # SuspiciousOperation): as FastAPI's HTTPException, a COMPLETED run with its status
        request_run.error = None
    if not getattr(response, "streaming", False):
        request_run.response_done()  # the body is complete, in memory
        finish_request(request_run, request_run.error)
        return response
    content = response.streaming_content
    if getattr(response, "is_async", False):
        response.streaming_content = _AsyncContent(content, request_run, not in_thread)
    else:
        response.streaming_content = _Content(content, request_run)
    return response


class _Content:
    """A streamed response's content, as Django stores it: iterating it runs ``_after``, whose
    end (the last chunk, an exception, or being closed or collected half-read) ends the
    request's run; ``close`` (Django calls it once the response is over) ends it too, even when
    not one chunk was asked for: a generator that never started runs none of its code, so the
    request would never be metered (a server that closed before sending, a test client).
    """

    def __init__(self, content: Iterable[bytes], request_run: OpenRequest) -> None:
        self._content = content
        self._request_run = request_run
        self._running: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        self._running = _after(self._content, self._request_run)
        return self._running

    def close(self) -> None:
        try:
            running = self._running
            close = getattr(running if running is not None else self._content, "close", None)
            if close is not None:
                close()
        finally:
            request_run = self._request_run
            finish_request(request_run, request_run.error)


def _after(content: Iterable[bytes], request_run: OpenRequest) -> Iterator[bytes]:
    try:
        yield from content
        request_run.response_done()
    except Exception as exc:  # the body raised: FAILED, as when a view raises
        request_run.error = exc
        raise
    finally:
        finish_request(request_run, request_run.error)


class _AsyncContent:
    """``_Content`` for an async stream (ASGI): iterating it runs ``_after_async``; ``close``
    ends a run whose content was never asked for. No ``__iter__``: Django takes it as async.

    ``ends_run``: False when the stream is consumed away from the request's context (WSGI):
    the iteration then only notes how the content ended, and ``close`` ends the run.
    """

    def __init__(
        self, content: AsyncIterable[bytes], request_run: OpenRequest, ends_run: bool = True
    ) -> None:
        self._content = content
        self._request_run = request_run
        self._ends_run = ends_run

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _after_async(self._content, self._request_run, self._ends_run)

    def close(self) -> None:
        request_run = self._request_run
        finish_request(request_run, request_run.error)


async def _after_async(
    content: AsyncIterable[bytes], request_run: OpenRequest, ends_run: bool = True
) -> AsyncIterator[bytes]:
    try:
        async for chunk in content:
            yield chunk
        request_run.response_done()
    except Exception as exc:  # the body raised: FAILED, as when a view raises
        request_run.error = exc
        raise
    finally:
        if ends_run:
            finish_request(request_run, request_run.error)
