"""``@drip.metered``, ``drip.run``, ``drip.customer`` and ``drip.current_event``.

Each call of a metered function records one event: event type, quantity, units, start time,
duration, outcome (``ok``/``error`` + exception class), parent event, run, customer,
correlation id and OpenTelemetry span id. Inside a run it is an ``event`` of that run (in the
run's client, whatever client decorated the function); outside any run but with a customer
(``drip.customer(...)`` or ``customer_id=``) it is a ``usage`` record with ``usage_type`` = the
meter. Generators and async generators are metered when they finish (exhausted, closed or
failed); their event starts when iteration starts, in the context current then, and each step
runs in the generator's own copy of that context, so nothing leaks into the consumer.

The hot path of a metered call inside a run is a ``ContextVar`` get and set/reset, two
``perf_counter_ns``, one tuple and one ``deque.append``: no lock, no I/O, no id formatting.
Decoration-time mistakes raise at once (``DripValidationError`` / ``TypeError``); call-time
problems go to the client's ``report`` (logged, ``on_error``, raised only in strict mode).

Quantity: a number, or a callable receiving the return value. Code inside the call can change
it through ``drip.current_event()``: ``.add(n)`` / ``.set_quantity(n)`` replace the decorator's
quantity (``.add`` counts from 0), ``.set_metadata(**kw)`` / ``.metadata`` extend its metadata.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._api import check_metadata
from ._calls import EventHandle, _Spec, current_event
from ._instrumentation import resolve
from ._records import MeterSpec
from ._run import CustomerScope, RunContext, bad_quantity, check_name
from ._wrappers import wrap_async_generator, wrap_coroutine, wrap_function, wrap_generator
from .errors import DripValidationError

if TYPE_CHECKING:
    from ._delivery import DeliveryStats, FlushReport
    from ._instrumentation import Instrumentation

__all__ = [
    "EventHandle",
    "current_event",
    "customer",
    "flush",
    "make_metered",
    "metered",
    "run",
    "shutdown",
    "stats",
]

F = TypeVar("F", bound=Callable[..., Any])


def _check_metadata(metadata: Any) -> dict[str, Any] | None:
    """As the client checks metadata (JSON, size); a non-dict is a TypeError at decoration."""
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    return check_metadata(metadata)


def make_metered(
    instr: Instrumentation | None,
    meter: str,
    *,
    quantity: float | Callable[[Any], float] = 1,
    units: str | None = None,
    event_type: str | None = None,
    customer_id: str | Callable[..., str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """``metered`` bound to a client (``instr``), or to the default client when None."""
    if callable(meter):
        raise TypeError("metered needs a meter name: write @drip.metered('meter'), not @metered")
    check_name(meter, "meter")
    event_type = check_name(event_type, "event_type", optional=True) or meter
    if units is not None and not isinstance(units, str):
        raise TypeError(f"units must be a string, got {type(units).__name__}")
    spec_m = MeterSpec(meter, event_type, units, _check_metadata(metadata))
    qfn: Callable[[Any], Any] | None = None
    if callable(quantity):
        qfn = quantity
    elif isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
        raise TypeError(
            f"quantity must be a number or a callable of the return value, "
            f"got {type(quantity).__name__}"
        )
    elif bad_quantity(quantity) is not None:
        raise DripValidationError(f"quantity {bad_quantity(quantity)}", field="quantity")
    customer_fn: Callable[..., Any] | None = None
    if callable(customer_id):
        customer_fn, customer_id = customer_id, None
    else:
        check_name(customer_id, "customer_id", optional=True)

    def decorate(fn: F) -> F:
        if isinstance(fn, (classmethod, staticmethod)):
            return type(fn)(decorate(fn.__func__))
        if not callable(fn):
            raise TypeError(f"metered can only decorate a callable, got {type(fn).__name__}")
        spec = _Spec(instr, spec_m, getattr(fn, "__qualname__", repr(fn)))
        spec.qfn, spec.qconst = qfn, None if qfn is not None else quantity  # type: ignore[assignment]
        spec.customer, spec.customer_fn = customer_id, customer_fn
        if inspect.isasyncgenfunction(fn):
            return wrap_async_generator(fn, spec)  # type: ignore[no-any-return]
        if inspect.isgeneratorfunction(fn):
            return wrap_generator(fn, spec)  # type: ignore[no-any-return]
        if inspect.iscoroutinefunction(fn):
            return wrap_coroutine(fn, spec)  # type: ignore[return-value]
        return wrap_function(fn, spec)  # type: ignore[return-value]

    return decorate


# -- the module-level API (re-exported by ``drip``) ---------------------------------------------


def metered(
    meter: str,
    *,
    quantity: float | Callable[[Any], float] = 1,
    units: str | None = None,
    event_type: str | None = None,
    customer_id: str | Callable[..., str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Record one event per call of the decorated function (see the module docstring).

    ``quantity``: a number, or a callable receiving the return value. ``customer_id``: a
    string, or a callable receiving the call's arguments (used outside runs). Works on
    functions, coroutines, generators, async generators, methods, class- and staticmethods.
    """
    return make_metered(
        None, meter, quantity=quantity, units=units, event_type=event_type,
        customer_id=customer_id, metadata=metadata,
    )  # fmt: skip


def run(
    workflow: str,
    *,
    customer_id: str | None = None,
    external_run_id: str | None = None,
    correlation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> RunContext:
    """A run of ``workflow``: ``with``/``async with`` it (yields a ``Run``), or decorate.

    Ends COMPLETED, FAILED (``error_code`` = the exception's class; it propagates unchanged)
    or CANCELLED (``CancelledError``, ``KeyboardInterrupt``). Inside a run it is a child run
    and inherits the customer; records go to the enclosing run's client, else the default.
    """
    return RunContext(
        None, workflow, customer_id=customer_id, external_run_id=external_run_id,
        correlation_id=correlation_id, metadata=metadata,
    )  # fmt: skip


def customer(customer_id: str) -> CustomerScope:
    """``with drip.customer(id):`` (or ``async with``, or a decorator): the customer inside."""
    return CustomerScope(customer_id)


def flush(timeout: float | None = None) -> FlushReport:
    """Flush the default client's records (bounded by ``timeout``); returns a report."""
    from ._delivery import FlushReport

    instr = resolve(None)
    return FlushReport(0, 0, 0) if instr is None else instr.flush(timeout)


def shutdown(timeout: float | None = None) -> FlushReport:
    """Flush and stop the default client's delivery; returns a report."""
    from ._delivery import FlushReport

    instr = resolve(None)
    return FlushReport(0, 0, 0) if instr is None else instr.shutdown(timeout)


def stats() -> DeliveryStats:
    """The default client's instrumentation counters."""
    from ._delivery import DeliveryStats

    instr = resolve(None)
    return DeliveryStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0) if instr is None else instr.stats()
