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

from collections.abc import Callable
from typing import Any, TypeVar

from ._customer_scope import CustomerScope
from ._default import default_client, default_recorder
from ._delivery import DeliveryStats, FlushReport
from ._metered import EventHandle, current_event, make_metered
from ._recorder import Recorder, resolve
from ._scopes import RunContext

__all__ = [
    "EventHandle",
    "Instrumentation",
    "LazyClient",
    "aflush",
    "current_event",
    "customer",
    "flush",
    "metered",
    "run",
    "shutdown",
    "stats",
]

F = TypeVar("F", bound=Callable[..., Any])


# -- the module-level API (re-exported by ``drip``) ---------------------------------------------


def metered(
    meter: str,
    *,
    quantity: float | Callable[[Any], float] = 1,
    units: str | None = None,
    event_type: str | None = None,
    customer_id: str | Callable[..., str] | None = None,
    metadata: dict[str, Any] | None = None,
    external_customer_id: str | Callable[..., str] | None = None,
) -> Callable[[F], F]:
    """Record one event per call of the decorated function (see the module docstring).

    ``quantity``: a number, or a callable receiving the return value. ``customer_id``: a
    string, or a callable receiving the call's arguments (used outside runs);
    ``external_customer_id`` the same with your own id (not both). Works on functions,
    coroutines, generators, async generators, methods, class- and staticmethods.
    """
    return make_metered(
        None, default_recorder, meter, quantity=quantity, units=units, event_type=event_type,
        customer_id=customer_id, metadata=metadata, external_customer_id=external_customer_id,
    )  # fmt: skip


def run(
    workflow: str,
    *,
    customer_id: str | None = None,
    external_run_id: str | None = None,
    correlation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    external_customer_id: str | None = None,
) -> RunContext:
    """A run of ``workflow``: ``with``/``async with`` it (yields a ``Run``), or decorate.

    Ends COMPLETED, FAILED (``error_code`` = the exception's class; it propagates unchanged)
    or CANCELLED (``CancelledError``, ``KeyboardInterrupt``). Inside a run it is a child run
    and inherits the customer; records go to the enclosing run's client, else the default.
    ``customer_id`` is Drip's id; ``external_customer_id`` your own (the server finds or
    creates that customer), not both.
    """
    return RunContext(
        None, default_recorder, workflow, customer_id=customer_id, external_run_id=external_run_id,
        correlation_id=correlation_id, metadata=metadata,
        external_customer_id=external_customer_id,
    )  # fmt: skip


def customer(
    customer_id: str | None = None, *, external_customer_id: str | None = None
) -> CustomerScope:
    """``with drip.customer(id):`` (or ``async with``, or a decorator): the customer inside.
    ``drip.customer(external_customer_id="user_123")`` names it by your own id."""
    return CustomerScope(
        customer_id, external_customer_id=external_customer_id, fallback=default_recorder
    )


def flush(timeout: float | None = None) -> FlushReport:
    """Flush the default client's records (bounded by ``timeout``); returns a report."""
    recorder = resolve(None, default_recorder)
    return FlushReport(0, 0, 0) if recorder is None else recorder.flush(timeout)


async def aflush(timeout: float | None = None) -> FlushReport:
    """``flush`` for asyncio code: waits without blocking the event loop."""
    recorder = resolve(None, default_recorder)
    return FlushReport(0, 0, 0) if recorder is None else await recorder.aflush(timeout)


def shutdown(timeout: float | None = None) -> FlushReport:
    """Flush and stop the default client's delivery; returns a report."""
    recorder = resolve(None, default_recorder)
    return FlushReport(0, 0, 0) if recorder is None else recorder.shutdown(timeout)


def stats() -> DeliveryStats:
    """The default client's instrumentation counters."""
    recorder = resolve(None, default_recorder)
    if recorder is None:
        return DeliveryStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return recorder.stats()


_ENTRY_POINTS: dict[str, Any] = {
    "metered": metered,
    "run": run,
    "customer": customer,
    "flush": flush,
    "aflush": aflush,
    "shutdown": shutdown,
    "stats": stats,
    "current_event": current_event,
}


class LazyClient:
    """The ``drip`` object: every attribute is the default client's, resolved on use.

    The instrumentation entry points (``metered``, ``run``, ...) do not build the client:
    they resolve it when a decorated function runs, so they work at import time.
    """

    def __getattr__(self, name: str) -> Any:
        entry = _ENTRY_POINTS.get(name)
        if entry is not None:
            return entry
        return getattr(default_client(), name)

    def __repr__(self) -> str:
        return "<drip default client (lazy)>"


class Instrumentation(Recorder):
    """A recorder with its own entry points, without an HTTP client: for tests and for a
    custom ``sender``. ``Drip`` / ``AsyncDrip`` offer the same methods."""

    def metered(self, meter: str, **options: Any) -> Callable[[F], F]:
        """``@instr.metered(meter)``: like ``drip.metered``, recording here."""
        return make_metered(self, default_recorder, meter, **options)

    def run(self, workflow: str, **options: Any) -> RunContext:
        """``with instr.run(workflow)``: like ``drip.run``, recording here."""
        return RunContext(self, default_recorder, workflow, **options)

    def customer(
        self, customer_id: str | None = None, *, external_customer_id: str | None = None
    ) -> CustomerScope:
        """``with instr.customer(id)``: the customer for everything inside."""
        return CustomerScope(customer_id, external_customer_id=external_customer_id, recorder=self)
