"""What every web integration does with one request, whatever the framework.

A middleware (ASGI, Flask, Django) asks ``RequestMeter.open`` for an ``OpenRequest`` when a
request arrives and calls its ``finish`` once the response is complete (after its last body
chunk). The run is what ``with drip.run(workflow, customer_id=..., external_run_id=...) as run:
run.event(meter, quantity, metadata=...)`` records (same records, same rules), opened through
the core's ``begin_deferred`` (no run open around the request: the request *is* its run, one
``RequestRun``) or ``begin_run`` (a child run, or the caller's run continued from baggage:
a ``ScopedRequestRun`` beside it) instead: a request is the hottest path there is, and
what never changes between requests is checked once per middleware and route, not per request
(the workflow name; the request event's metadata, whose keys are fixed and whose values are
the route label, the method, an int status and a float duration, proven valid once per
route and method; anything unproven takes ``Run.event``'s full checks). What comes from the
request or the customer callable (the customer, the request id) is checked every time.

One metered request is one run:

- workflow: the middleware's ``workflow`` or ``"<METHOD> <route template>"``;
- ``external_run_id``: the request id header, when the request has one;
- one ``meter`` event with metadata ``status_code``, ``route``, ``method``, ``duration_ms`` (and
  ``incomplete: true`` when the response started but its last body chunk was never sent: the
  client went away, the body raised, the server's stop cancelled it);
- status >= 500 or an exception ends it FAILED (the exception is the framework's to handle);
  4xx end it COMPLETED with the status recorded.

Instrumentation never breaks the host application: a customer callable that raises, or returns
something that is not a customer, is logged on the ``drip`` logger and that request is served
unmetered.
"""

from __future__ import annotations

import fnmatch
import http
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from drip import _default, otel
from drip import context as drip_context
from drip._checks import (
    check_customer,
    check_metadata,
    check_name,
    metadata_problem,
    quantity_problem,
)
from drip._compiled import speedups
from drip._default import default_client, default_recorder
from drip._recorder import DISCARD, overrides
from drip._records import (
    REQUEST_END,
    REQUEST_EVENT,
    REQUEST_START,
    encode_manual,
    request_parts,
)
from drip._scopes import DeferredRun, Run, begin_deferred, begin_run, leave_run
from drip.errors import DripConfigurationError, DripValidationError

__all__ = ["COMPILED", "UNMATCHED", "HTTPServerError", "OpenRequest", "RequestMeter", "RequestRun",
           "ScopedRequestRun", "application_started", "customer_options", "finish_request",
           "open_request"]  # fmt: skip

logger = logging.getLogger("drip")

#: the route label of a request no route matched (a fixed label: raw paths are unbounded and
#: may carry personal data)
UNMATCHED = "<unmatched>"


class HTTPServerError(Exception):
    """How a run ends when the response status is >= 500 and nothing raised.

    Never raised into the application: it only names the run's ``error_code``.
    """


def customer_options(result: Any) -> dict[str, Any] | None:
    """The ``drip.run`` keyword arguments for what a ``customer`` callable returned.

    A string is a customer id; a mapping may hold ``customer_id`` or ``external_customer_id``;
    None means "do not meter this request". Anything else is a TypeError naming what came back.
    """
    if result is None:
        return None
    if isinstance(result, str):
        return {"customer_id": result}
    if isinstance(result, Mapping):
        options = {k: result[k] for k in ("customer_id", "external_customer_id") if k in result}
        unknown = set(result) - set(options)
        if unknown or not options:
            raise TypeError(
                "a customer mapping takes 'customer_id' or 'external_customer_id', got "
                f"{sorted(map(str, result))}"
            )
        return options
    raise TypeError(
        "the customer callable must return a customer id (str), a mapping with "
        f"'customer_id' or 'external_customer_id', or None; got {type(result).__name__}"
    )


def _patterns(value: Iterable[str] | str | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"{name} takes route patterns (non-empty strings), got {pattern!r}")
    return patterns


class RequestMeter:
    """The settings of one middleware, checked when it is installed (mistakes raise then)."""

    __slots__ = ("_customers", "_problems", "_shapes", "customer", "exclude", "include", "meter",
                 "quantity", "trust_baggage", "workflow")  # fmt: skip

    def __init__(
        self,
        *,
        customer: Callable[[Any], Any],
        workflow: str | None = None,
        meter: str = "api_calls",
        quantity: float = 1,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        trust_baggage: bool = False,
    ) -> None:
        if not callable(customer):
            raise TypeError(
                "customer must be a callable receiving the request and returning a customer "
                f"id (or None to skip the request), got {type(customer).__name__}"
            )
        if not isinstance(meter, str) or not meter.strip():
            raise TypeError(f"meter must be a non-empty string, got {meter!r}")
        if workflow is not None and (not isinstance(workflow, str) or not workflow.strip()):
            raise TypeError(f"workflow must be a non-empty string or None, got {workflow!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
            raise TypeError(f"quantity must be a number, got {type(quantity).__name__}")
        self.customer = customer
        self.workflow = workflow
        self.meter = meter
        self.quantity = quantity
        self.include = _patterns(include, "include")
        self.exclude = _patterns(exclude, "exclude")
        self.trust_baggage = bool(trust_baggage)
        # the meter and quantity are checked here, once: the request event never checks them
        check_name(meter, "meter")
        if quantity_problem(quantity):
            raise ValueError(f"quantity {quantity_problem(quantity)}")
        #: (method, route label) -> its ``Shape``
        self._shapes: dict[tuple[str, str], Shape] = {}
        #: customer ids the callable returned that passed ``check_name``
        self._customers: set[str] = set()
        #: (what went wrong, exception type) -> [when last logged, requests unmetered since]
        self._problems: dict[tuple[str, str], list[float]] = {}
        application_started()

    def unmetered(self, exc: BaseException, what: str) -> None:
        """Say why a request is served but not metered: the first time with its traceback,
        then the same problem (``what`` and the exception's type) at most once a minute, with
        how many requests it left unmetered meanwhile. A bug in a customer callable meets
        every request: a traceback each would flood the application's log."""
        key = (what, type(exc).__qualname__)
        now = time.monotonic()
        seen = self._problems.get(key)
        if seen is None:
            if len(self._problems) >= _PROBLEMS_MAX:
                self._problems.clear()
            self._problems[key] = [now, 0]
            logger.error("drip: %s; the request is served but not metered (this problem is "
                         "logged again at most once a minute)", what, exc_info=exc)  # fmt: skip
        elif now - seen[0] >= _PROBLEM_EVERY_S:
            logger.error("drip: %s; %d requests served but not metered in the last %d s, the "
                         "latest: %s: %s", what, seen[1] + 1, now - seen[0],
                         type(exc).__name__, exc)  # fmt: skip
            seen[0], seen[1] = now, 0
        else:
            seen[1] += 1

    def wanted(self, route: str | None, path: str, prefix: str = "") -> bool:
        """Whether a request to ``path`` (matched to ``route``) is metered at all.

        A pattern (``fnmatch`` style: ``/health``, ``/internal/*``, ``/items/{item_id}``) is
        compared with the route template, and with the raw path only when no route matched:
        the path is the client's to choose, and matching it as well let a client skip billing
        (``exclude=["*/health"]`` with a route ``/files/{name:path}``: ``/files/x/health``).
        ``prefix``: where the deployment serves the application (ASGI ``root_path``, WSGI
        ``SCRIPT_NAME``), which starts the template; it is matched without it too, so that
        patterns written as in the application hold behind a proxy.
        """
        if self.exclude is None and self.include is None:
            return True
        names: tuple[str, ...] = (path,) if route is None else (route,)
        prefix = prefix.rstrip("/")
        if prefix and names[0].startswith(prefix + "/"):
            names = (names[0], names[0][len(prefix) :])
        if self.exclude is not None and _any_match(names, self.exclude):
            return False
        return self.include is None or _any_match(names, self.include)

    def carried(self, baggage: str | None) -> Any:
        """The caller's run carried in a ``baggage`` header, when trusted and present, else None.

        A request that carries one continues that run: the customer callable is not asked,
        since the baggage names the customer.
        """
        if not self.trust_baggage or not baggage:
            return None
        try:
            continuation = drip_context.extract({"baggage": baggage})
        except Exception:
            logger.exception("drip: incoming baggage could not be read")
            return None
        return continuation if continuation.run_id is not None else None

    def open(
        self,
        customer: Any,
        method: str,
        route: str | None,
        request_id: str | None,
        carried: Any = None,
    ) -> OpenRequest | None:
        """Open the request's run in the current context, or None when it is not metered.

        ``customer`` is what the customer callable returned; ``carried`` what ``carried``
        found (then the caller's run is continued instead).
        """
        label = route or UNMATCHED
        try:
            if carried is not None:
                return ScopedRequestRun(self, carried, method, label)
            if customer.__class__ is str:  # the common answer: no options dict to build
                customer_id: str | None = customer
                if customer not in self._customers:
                    check_name(customer, "customer_id")  # raises for an id that is not one
                    if len(self._customers) < _CUSTOMERS_MAX:  # ids come from requests
                        self._customers.add(customer)
            else:
                options = customer_options(customer)
                if options is None:
                    return None
                customer_id = check_customer(
                    options.get("customer_id"), options.get("external_customer_id"), "the request"
                )
            shape = self._shapes.get((method, label)) or self._shape(method, label)
            run_id = None if not request_id else _request_id(request_id)
            assert customer_id is not None
            run = begin_deferred(RequestRun, default_recorder, shape[0], customer_id, run_id,
                                 _answered(drip_context.SCOPE.get()[1]))  # fmt: skip
            if run is None:  # inside a run: the request's is its child
                return ScopedRequestRun(self, None, method, label, shape, run_id, customer_id)
            run._meter = self
            run._shape = shape
            run.method = method
            run.route = label
            run.status = run.error = run.done_ns = None
            run._finished = False
            return run
        except Exception as exc:
            self.unmetered(exc, "the request's customer or run could not be opened")
            return None

    def _shape(self, method: str, label: str) -> Shape:
        """The ``Shape`` of a request to ``label`` (remembered per route and method)."""
        workflow = check_name(self.workflow or f"{method} {label}", "workflow")
        assert workflow is not None
        # the widest values the request event can hold: if these pass, every int status in
        # +-2**63 and every finite duration does
        widest = {"status_code": -(2**63), "route": label, "method": method,
                  "duration_ms": -2.2250738585072014e-308, "incomplete": True}  # fmt: skip
        parts = None
        if metadata_problem(widest) is None:
            parts = tuple(
                request_parts(workflow, self.meter, self.quantity, label, method, cut)
                for cut in (False, True)
            )
        shape = (workflow, parts)
        if len(self._shapes) < _SHAPES_MAX:  # methods come from clients: keep it bounded
            self._shapes[(method, label)] = shape
        return shape


#: what is fixed for one (method, route) of a middleware: the checked workflow, and the JSON of
#: the request run's fixed fields (``drip._records.request_parts``, complete and incomplete)
#: when its event's metadata is proven valid whatever its status and duration, else None
Shape = tuple[str, "tuple[tuple[str, str, str, str], ...] | None"]
#: (method, route) pairs remembered per middleware; past that each request is checked
_SHAPES_MAX = 1024
#: checked customer ids remembered per middleware; past that each new one is checked each time
_CUSTOMERS_MAX = 4096
#: how often one problem that leaves requests unmetered is logged again, and how many
#: problems a middleware remembers
_PROBLEM_EVERY_S = 60.0
_PROBLEMS_MAX = 256
_INT64 = 2**63


#: when a bad request id was last logged (``time.monotonic``); at most one line a minute
_bad_request_id_logged = [-60.0]


def _request_id(request_id: Any) -> str | None:
    """The request id as the run's external id, or None when it cannot be one (blank, too long,
    unstorable). The header comes from the client: a bad one must not leave the request
    unmetered (a client could then choose not to be billed), so the run goes without it."""
    try:
        return check_name(request_id, "external_run_id")
    except Exception as exc:
        now = time.monotonic()
        if now - _bad_request_id_logged[0] >= 60:
            _bad_request_id_logged[0] = now
            logger.warning("drip: a request id is not used as the run's external id (%s); "
                           "the request is metered without it", exc)  # fmt: skip
        return None


def _any_match(names: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns for name in names)


def _answered(run: Any) -> bool:
    """Whether ``run`` is another request's whose response has started and is not over: a
    streamed body that a test client never read to its end (a server always does) leaves its
    run current in that thread. It is not the parent of the next request there."""
    return isinstance(run, RequestRun) and run.status is not None and not run._finished


class RequestRun(DeferredRun):
    """One metered request and its run, one object: what ``RequestMeter.open`` gives when no
    run is open around the request (nearly always). The run is open from construction until
    ``finish``; it is the current run while the handler runs (so it is what ``drip.Run`` code
    there sees), and when nothing in the handler referred to it, ``finish`` records it whole
    (start, event, end) at once (``DeferredRun.end_alone``).
    """

    __slots__ = ("_finished", "_meter", "_shape", "done_ns", "error", "method", "route",
                 "status")  # fmt: skip
    _finished: bool
    _meter: RequestMeter
    _shape: Shape
    done_ns: int | None
    #: how the handler failed, when the framework tells before the response ends
    error: BaseException | None
    method: str
    route: str
    status: int | None

    def response_done(self) -> None:
        """The last body chunk has been sent: the request's duration ends here."""
        if self.done_ns is None:
            self.done_ns = time.perf_counter_ns()

    def finish(self, exc: BaseException | None = None) -> None:
        """Record the request event and end the run (FAILED on an exception or status >= 500).

        Must be called in the context ``open`` was called in; never raises; once only (a
        second call does nothing).
        """
        if self._finished:
            return
        self._finished = True
        status = self.status
        if status is None and exc is not None:
            status = 500
        failed = exc
        if exc is None and status is not None and status >= 500:
            failed = HTTPServerError(f"HTTP {status} {_phrase(status)}".rstrip())
        parts = self._shape[1]
        # the event's metadata is proven valid: a known route and method, an int status
        proven = parts is not None and (
            status is None or (status.__class__ is int and -_INT64 <= status < _INT64)
        )
        if proven and self._pending:  # the common case: nothing referred to the run
            assert parts is not None
            cut = self.done_ns is None and status is not None  # started, never finished
            try:
                self.end_alone(parts[cut], status, self.done_ns, failed)
            except Exception:
                logger.exception("drip: the request's run could not be recorded")
            return
        _record_event(self._meter, self, self, status, exc, proven)
        try:
            leave_run(self, failed)
        except Exception:
            logger.exception("drip: the request's run could not be ended")


class ScopedRequestRun:
    """One metered request whose run is not its own object: a child of the run open around
    the request, or the caller's run continued from trusted baggage (entered here, never
    ended). Same interface as ``RequestRun``.
    """

    __slots__ = ("_context", "_finished", "_meter", "_run", "_shape", "done_ns", "error",
                 "external_run_id", "metadata", "method", "route", "start_ns", "status",
                 "workflow")  # fmt: skip
    _run: Run | None  # None once finished: the run refers to this object, no cycle is left

    def __init__(
        self,
        meter: RequestMeter,
        context: Any,
        method: str,
        route: str,
        shape: Shape | None = None,
        external_run_id: str | None = None,
        customer_id: str | None = None,
    ) -> None:
        """``context``: the caller's run from ``carried`` (entered here, never ended), or None
        for a child run (``shape``, ``external_run_id``, ``customer_id``: checked); it is
        also what that run is opened from (``workflow``, ``external_run_id``, ``metadata``:
        see ``drip._scopes.begin_run``)."""
        self._meter = meter
        self._context = context
        self.method = method
        self.route = route
        self._shape = shape
        self.workflow = "" if shape is None else shape[0]
        self.external_run_id = external_run_id
        self.metadata = None
        self.status: int | None = None
        #: how the handler failed, when the framework tells before the response ends
        self.error: BaseException | None = None
        self.done_ns: int | None = None
        self._finished = False
        if context is None:
            self._run = begin_run(self, None, default_recorder, customer_id, None, True)
            self.start_ns = self._run._t0
        else:
            self.start_ns = time.perf_counter_ns()
            self._run = context.__enter__()

    def response_done(self) -> None:
        """The last body chunk has been sent: the request's duration ends here."""
        if self.done_ns is None:
            self.done_ns = time.perf_counter_ns()

    def finish(self, exc: BaseException | None = None) -> None:
        """What ``RequestRun.finish`` does, for this request's run."""
        if self._finished:
            return
        self._finished = True
        status = self.status if self.status is not None else (500 if exc else None)
        run = self._run
        if run is None:  # not reached: ``_finished`` is set first
            return
        failed = exc
        if exc is None and status is not None and status >= 500:
            failed = HTTPServerError(f"HTTP {status} {_phrase(status)}".rstrip())
        shape = self._shape
        proven = (
            shape is not None
            and shape[1] is not None
            and (status is None or (status.__class__ is int and -_INT64 <= status < _INT64))
        )
        _record_event(self._meter, self, run, status, exc, proven)
        try:
            if self._context is None:
                self._run = None
                leave_run(run, failed)
            else:
                self._context.__exit__(None if failed is None else type(failed), failed, None)
        except Exception:
            logger.exception("drip: the request's run could not be ended")


#: what ``RequestMeter.open`` gives: both have ``status``, ``error``, ``done_ns``,
#: ``response_done`` and ``finish``
OpenRequest = RequestRun | ScopedRequestRun


def _record_event(
    meter: RequestMeter,
    request: RequestRun | ScopedRequestRun,
    run: Run,
    status: int | None,
    exc: BaseException | None,
    proven: bool,
) -> None:
    """Record ``request``'s event in ``run`` (which is started, or starts now)."""
    done = request.done_ns
    start = request._t0 if isinstance(request, RequestRun) else request.start_ns
    try:
        metadata: dict[str, Any] = {
            "status_code": status,
            "route": request.route,
            "method": request.method,
            # µs resolution, as a float of ms (floor division: cheaper than round)
            "duration_ms": ((done or time.perf_counter_ns()) - start) // 1000 / 1000,
        }
        if done is None and status is not None:
            # the response started and its last chunk was never handed on: the client left,
            # the body raised, or the server's stop cancelled it
            metadata["incomplete"] = True
        checked: dict[str, Any] | None = metadata
        if not proven:  # a status of another type, an unusual route or method: the full checks
            try:
                checked = check_metadata(metadata)
            except (DripValidationError, TypeError) as problem:  # as run.event reports it
                if run._recorder is not None:
                    run._recorder.report(problem, f"the event {meter.meter[:80]!r}")
                return
        run._record(meter.meter, meter.quantity, None, None, checked, _encode_metered)
    except Exception:
        logger.exception("drip: the request event could not be recorded")


def _encode_metered(rec: Any, clock: Any) -> str:
    """A request event recorded as a manual one (the run was referred to: an outer run, a
    metered call in the handler), counting for its meter as the compiled request event does
    (``request_parts``): ``"meter"`` after its ``"eventType"`` (quotes inside JSON strings are
    escaped, so the first ``,"eventType":`` is the field)."""
    head = f',"eventType":{json.dumps(rec[5])}'
    return encode_manual(rec, clock).replace(head, f'{head},"meter":{json.dumps(rec[5])}', 1)


def application_started() -> None:
    """A middleware is set up (``RequestMeter``): on the main thread, where servers import
    and build applications, make the default client now, so its SIGTERM hook is in place even when the first record comes from a thread pool
    (a WSGI server's threads, Django's sync middleware under ASGI, FastAPI's sync handlers),
    where no handler can be set (``drip._delivery.lifecycle``). Unconfigured is not an error
    here: the first request says so."""
    try:
        default_client()
    except DripConfigurationError:
        pass
    except Exception:  # never stand between the application and its start
        logger.exception("drip: preparing the default client at startup failed")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _finish(request: OpenRequest, exc: BaseException | None = None) -> None:
    request.finish(exc)


def _report(exc: BaseException) -> None:
    logger.error("drip: the request's run could not be recorded", exc_info=exc)


def _compiled() -> Any:
    """``drip._speedups`` bound to this module's classes, or None: the Python here."""
    if speedups is None:
        return None
    try:
        speedups.bind_requests(
            run_type=RequestRun, meter_type=RequestMeter, open=RequestMeter.open,
            overrides=overrides, fallback=default_recorder, defaults=vars(_default),
            discard=DISCARD, refresh=otel.refresh, span_context=otel.span_context,
            trace_id_hex=otel.trace_id_hex, check_name=check_name,
            start_first=DeferredRun._start_first, report=_report,
            marks=(REQUEST_START, REQUEST_EVENT, REQUEST_END), unmatched=UNMATCHED,
        )  # fmt: skip
    except ImportError:  # the metered call is not compiled here (another interpreter)
        return None
    return speedups


_compiled_module = _compiled()
#: whether requests take the compiled common case (``drip/_speedups_web.c``)
COMPILED = _compiled_module is not None
#: ``open_request(meter, customer, method, route, request_id)``: ``RequestMeter.open``, its
#: common case compiled when ``COMPILED``
open_request: Callable[[RequestMeter, Any, str, str | None, str | None], OpenRequest | None] = (
    RequestMeter.open if _compiled_module is None else _compiled_module.open_request
)
#: ``finish_request(request, exc=None)``: ``request.finish(exc)``, its common case compiled
#: when ``COMPILED``
finish_request: Callable[[OpenRequest, BaseException | None], None] = (
    _finish if _compiled_module is None else _compiled_module.finish_request
)
