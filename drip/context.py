"""The instrumentation's context: which customer, run and event the current code belongs to.

This module owns every ``ContextVar`` of drip. There is exactly one: ``SCOPE`` holds a small
immutable tuple ``(customer_id, run, event_seq)`` for the innermost scope, so a metered call
reads all three with one ``get`` and pushes its own scope with one ``set`` (``reset`` in
``finally``). Tuples are never mutated, so a copied context can never see a later change made
elsewhere.

asyncio tasks copy the context when they are created, so ``asyncio.create_task``,
``asyncio.gather`` and ``asyncio.to_thread`` carry it natively. Plain threads and executors do
not; use the helpers here::

    from drip.context import ContextThreadPoolExecutor, wrap

    with drip.run("report", customer_id=cid):
        threading.Thread(target=wrap(work)).start()        # a thread
        with ContextThreadPoolExecutor(8) as pool:         # every submit()/map()
            pool.map(summarise, chunks)
        await loop.run_in_executor(None, wrap(blocking))   # any executor

``wrap`` captures the context when it is called, so call it where the work is handed off.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._remote import Continuation
    from ._scopes import Run

__all__ = [
    "ContextThreadPoolExecutor",
    "current_customer_id",
    "current_run",
    "extract",
    "inject",
    "wrap",
]

P = ParamSpec("P")
T = TypeVar("T")

#: ``(customer_id, run, event_seq)``: the customer in effect, the open run (a ``drip.Run``)
#: and the sequence number of the innermost metered call (its parent for nested calls).
Scope = tuple[str | None, "Run | None", int | None]

EMPTY: Scope = (None, None, None)
SCOPE: contextvars.ContextVar[Scope] = contextvars.ContextVar("drip_scope", default=EMPTY)


def current_run() -> Run | None:
    """The run open in this context (``with drip.run(...)``), or None."""
    return SCOPE.get()[1]


def current_customer_id() -> str | None:
    """The customer in effect here (from ``drip.customer``, a run or a metered call), or None."""
    return SCOPE.get()[0]


def wrap(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` bound to the current context, to run in another thread or executor.

    Each call runs in a fresh copy of the captured context, so the wrapped function can be
    called many times, even concurrently, and what it sets never leaks back.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def in_context(*args: P.args, **kwargs: P.kwargs) -> T:
        return captured.copy().run(fn, *args, **kwargs)

    return in_context


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the submitter's context.

    ``submit`` (and so ``map`` and ``loop.run_in_executor(pool, ...)``) copies the caller's
    context, so metered calls in the pool join the caller's run and customer.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


# -- across processes: W3C baggage (drip._remote does the work; it hands itself down here) ------

#: ``(inject, extract)`` of ``drip._remote``, set when ``drip`` is imported
_propagation: Any = None


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Put the current run, customer and event into ``headers`` (W3C ``baggage``); returns them.

    Call it on the headers of an outgoing request (``drip.integrations.httpx`` and
    ``.requests`` do it for every call); the receiving service continues the run with
    ``extract``. Keys are prefixed ``drip.``; the API key never travels. With OpenTelemetry in
    use, its ``traceparent`` is injected too.
    """
    return _propagation[0](headers)  # type: ignore[no-any-return]


def extract(headers: Any) -> Continuation:
    """What a request's headers carry; ``with extract(request.headers):`` records into that run.

    Inside, metered calls are events of the caller's run (their parent: the caller's event),
    ``drip.run`` opens a child run of it, and the caller's customer is in effect. The run is
    not ended here. Extract only from callers you trust: the baggage names who is billed.
    """
    return _propagation[1](headers)  # type: ignore[no-any-return]
