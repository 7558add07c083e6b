"""One metered call: its event handle (``current_event()``), and the general path.

The general path (``Call``) serves every case the inline fast paths in ``_wrap`` do not: usage
records outside runs, generators, quantity callables, ``current_event()`` handles.

A quantity that cannot be recorded (the quantity callable raised or returned NaN, a negative
number, ...) is never recorded as a silent 0 with outcome ``ok``: the event is recorded with
quantity 0, outcome ``error``, ``errorType`` ``"DripValidationError"`` (unless the call itself
raised) and the reason in ``metadata["dripError"]``; the problem is also reported (strict mode
raises it, after the record is made).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import otel as _otel
from .._checks import check_name, clean_text, quantity_problem
from .._forks import after_fork_in_child
from .._recorder import Fallback, Recorder, resolve
from .._records import MeterSpec, encode_event, encode_usage, event_id, next_seq, run_head
from ..context import SCOPE, Scope
from ..errors import DripValidationError

if TYPE_CHECKING:
    from .._scopes import Run

__all__ = [
    "Call",
    "EventHandle",
    "Spec",
    "begin_in",
    "current_event",
    "general_async",
    "general_sync",
    "handles",
    "in_run",
]

logger = logging.getLogger("drip")

_get, _set, _reset = SCOPE.get, SCOPE.set, SCOPE.reset
_perf = time.perf_counter_ns
_span = _otel.span_context
#: the longest reason kept in an event's ``metadata["dripError"]``
MAX_REASON = 500
#: handles given out by ``current_event()``, by sequence number; popped when the call ends
handles: dict[int, EventHandle] = {}
_handle_lock = threading.Lock()


@after_fork_in_child
def _new_handle_lock_in_child() -> None:
    # a thread of the parent inside ``EventHandle.add`` at fork() would leave it held for ever
    global _handle_lock
    _handle_lock = threading.Lock()


class EventHandle:
    """The current metered call, as ``drip.current_event()`` returns it."""

    __slots__ = ("_bad", "_closed", "_metadata", "_quantity", "_seq", "_usage")

    def __init__(self, seq: int, usage: bool) -> None:
        self._seq = seq
        self._usage = usage
        self._quantity: float | None = None
        self._metadata: dict[str, Any] | None = None
        self._bad: str | None = None
        self._closed = False

    @property
    def recording(self) -> bool:
        """True inside a metered call (False for the stand-in given outside one)."""
        return True

    @property
    def id(self) -> str | None:
        """The event's id (``evt_…``; ``use_…`` for a usage record outside any run)."""
        return event_id(self._seq, self._usage)

    @property
    def quantity(self) -> float | None:
        """The quantity set through this handle so far (None: the decorator's applies)."""
        return self._quantity

    def add(self, n: float) -> None:
        """Add ``n`` to the quantity (which then starts from 0, not the decorator's)."""
        if self._check(n):
            with _handle_lock:
                self._quantity = (self._quantity or 0) + n

    def set_quantity(self, n: float) -> None:
        """Set the quantity, replacing the decorator's."""
        if self._check(n):
            self._quantity = n

    @property
    def metadata(self) -> dict[str, Any]:
        """This event's extra metadata (merged over the decorator's); mutate freely."""
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    def set_metadata(self, **values: Any) -> None:
        """Add metadata keys to this event."""
        self.metadata.update(values)

    def _check(self, n: Any) -> bool:
        if self._closed:
            logger.warning("drip: event %s already ended; a later quantity is ignored", self.id)
            return False
        problem = quantity_problem(n)
        if problem is not None:
            self._bad = f"{n!r} ({problem})"
            return False
        return True

    def __repr__(self) -> str:
        return f"<drip.EventHandle {self.id} quantity={self._quantity!r}>"


class _NoEvent(EventHandle):
    """What ``current_event()`` gives outside any metered call: accepts and ignores all."""

    __slots__ = ()

    @property
    def recording(self) -> bool:
        return False

    @property
    def id(self) -> str | None:
        return None

    def _check(self, n: Any) -> bool:
        return False

    def set_metadata(self, **values: Any) -> None:
        pass

    @property
    def metadata(self) -> dict[str, Any]:
        return {}


_NO_EVENT = _NoEvent(0, False)


def current_event() -> EventHandle:
    """The innermost metered call running here (a stand-in with ``recording=False`` if none)."""
    _, run, seq = _get()
    if seq is None:
        return _NO_EVENT
    handle = handles.get(seq)
    if handle is None:
        handle = handles.setdefault(seq, EventHandle(seq, run is None))
    return handle


class Spec:
    """Everything one ``@metered(...)`` fixed at decoration time."""

    __slots__ = (
        "customer", "customer_fn", "fallback", "instr", "later", "m", "name", "qconst", "qfn",
    )  # fmt: skip

    def __init__(self, instr: Recorder | None, fallback: Fallback, m: MeterSpec, name: str) -> None:
        self.instr = instr
        self.fallback = fallback
        self.m = m
        self.name = name
        self.qconst: float | None = 1
        self.qfn: Callable[[Any], Any] | None = None
        self.customer: str | None = None
        self.customer_fn: Callable[..., Any] | None = None
        #: begun by code, not a decorated function (an LLM integration's call): said so in reports
        self.later = False


class Call:
    """One metered call on the general path (usage records, generators, callables, handles)."""

    __slots__ = ("enc", "instr", "owner", "parent", "scope", "seq", "sink", "span", "spec", "t0")

    def __init__(
        self,
        spec: Spec,
        instr: Recorder | None,
        sink: Callable[[Any], None],
        enc: Any,
        owner: Any,
        scope: Scope,
        parent: int | None,
        seq: int,
        span: Any,
        t0: int,
    ) -> None:
        self.spec, self.instr, self.sink, self.enc, self.owner = spec, instr, sink, enc, owner
        self.scope, self.parent, self.seq, self.span, self.t0 = scope, parent, seq, span, t0

    def finish(
        self, t1: int, result: Any = None, exc: BaseException | None = None, evaluate: bool = True
    ) -> None:
        """Record the call; a quantity problem is reported after (raised only if nothing was)."""
        spec = self.spec
        quantity, meta, problem = spec.qconst, spec.m.metadata, None
        handle = handles.pop(self.seq, None) if handles else None
        if handle is not None:
            handle._closed = True
            if handle._metadata:
                meta = {**meta, **handle._metadata} if meta else dict(handle._metadata)
            if handle._bad is not None:
                problem = f"current_event() was given a bad quantity {handle._bad}"
            quantity = handle._quantity if handle._quantity is not None else quantity
        if spec.qfn is not None and (handle is None or handle._quantity is None):
            quantity = None
            if evaluate and exc is None:
                try:
                    quantity = spec.qfn(result)
                except Exception as error:
                    problem = f"the quantity callable raised {error!r}"
                else:
                    if quantity is None:  # e.g. reply.get("tokens") on a reply without them
                        problem = "the quantity callable returned None, not a number"
        if quantity is not None:
            bad = quantity_problem(quantity)
            if bad is not None:
                problem, quantity = f"the quantity {bad}", None
        if quantity is None:
            quantity = 0  # unknown (the call failed, or see the problem): say so, not 1
        error_type = None if exc is None else type(exc).__name__
        if problem is not None:
            # recorded, but never as a silent success: outcome error, and the reason
            error_type = error_type or "DripValidationError"
            reason = clean_text(problem[:MAX_REASON])
            meta = {**meta, "dripError": reason} if meta else {"dripError": reason}
        self.sink((
            self.enc, spec.m, self.owner, self.parent, self.seq, self.t0, t1, quantity,
            error_type, self.span, meta,
        ))  # fmt: skip
        if problem is not None and self.instr is not None:
            err = DripValidationError(
                f"@metered({spec.m.meter!r}) on {spec.name}: {problem}; recorded with quantity 0 and outcome error",
                field="quantity",
            )
            try:
                self.instr.report(err)
            except DripValidationError:
                if exc is None and evaluate:
                    raise  # strict mode, and no exception of the caller's to hide


def in_run(
    spec: Spec, customer: str | None, run: Run, parent: int | None, seq: int, span: Any, t0: int
) -> Call:
    """The general path for a call in a run (the first one opens the run's fast path)."""
    if run._fast is None and not run.remote_parent:
        run._fast = run_head(run)
    return Call(
        spec, run._recorder, run._append, encode_event, run, (customer, run, seq), parent, seq,
        span, t0,
    )  # fmt: skip


def _begin(spec: Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """Start a metered call in the current context (None: it cannot be recorded)."""
    scope = _get()
    customer, run, parent = scope
    if run is not None:
        seq = next_seq()
        return in_run(spec, customer, run, parent, seq, _otel.span_context(), _perf())
    instr = resolve(spec.instr, spec.fallback)
    if instr is None:
        return None
    if spec.customer_fn is not None:
        try:
            customer = (
                check_name(spec.customer_fn(*args, **kwargs), "customer_id", optional=True)
                or customer
            )
        except Exception as exc:
            problem = DripValidationError(
                f"@metered({spec.m.meter!r}) on {spec.name}: the customer_id callable failed "
                f"({exc!r}); this call is not recorded",
                field="customer_id",
            )
            problem.__cause__ = exc
            instr.report(problem)
            return None
    customer = spec.customer or customer
    if customer is None:
        instr.report(
            DripValidationError(
                f"{spec.name} was made outside any run and without a customer, so it is not "
                "recorded: open a drip.run(..., customer_id=) or drip.customer(...) around it"
                + _in_a_thread(),
                field="customer_id",
            )
            if spec.later
            else DripValidationError(
                f"@metered({spec.m.meter!r}) on {spec.name} was called outside any run and "
                "without a customer, so it is not recorded: open a drip.run(..., customer_id=) "
                "or drip.customer(...), or pass customer_id= to the decorator" + _in_a_thread(),
                field="customer_id",
            )
        )
        return None
    seq = next_seq()
    _otel.refresh()
    span = None if _otel.CV is None else _span()
    return Call(
        spec, instr, instr.append, encode_usage, customer, (customer, None, seq), parent, seq,
        span, _perf(),
    )  # fmt: skip


def general_sync(spec: Spec, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    call = _begin(spec, args, kwargs)
    if call is None:
        return fn(*args, **kwargs)
    token = _set(call.scope)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        t1 = _perf()
        _reset(token)
        call.finish(t1, None, exc)
        raise
    t1 = _perf()
    _reset(token)
    call.finish(t1, result)
    return result


async def general_async(
    spec: Spec, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
) -> Any:
    call = _begin(spec, args, kwargs)
    if call is None:
        return await fn(*args, **kwargs)
    token = _set(call.scope)
    try:
        result = await fn(*args, **kwargs)
    except BaseException as exc:
        t1 = _perf()
        _reset(token)
        call.finish(t1, None, exc)
        raise
    t1 = _perf()
    _reset(token)
    call.finish(t1, result)
    return result


def begin_in(ctx: contextvars.Context, spec: Spec, args: Any, kwargs: Any) -> Call | None:
    """Begin a generator's call inside its own context, and make it current there."""

    def begin() -> Call | None:
        call = _begin(spec, args, kwargs)
        if call is not None:
            _set(call.scope)  # the context is the generator's own: never reset
        return call

    return ctx.run(begin)


def _in_a_thread() -> str:
    """What to add when the call runs on another thread than the main one: the run or customer
    the code around it opened may be in the thread that started it (threads begin empty)."""
    if threading.current_thread() is threading.main_thread():
        return ""
    return (
        "; in a thread or executor, a run opened in the thread that started it is carried "
        "with drip.context.wrap(fn) or drip.context.ContextThreadPoolExecutor"
    )
