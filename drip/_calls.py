"""One metered call: its event handle (``current_event()``), and the general path.

The general path (``_Call``) serves every case the inline fast paths in ``drip._wrappers`` do
not: usage records outside runs, generators, quantity callables, ``current_event()`` handles.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import otel as _otel
from ._instrumentation import resolve
from ._records import MeterSpec, encode_event, encode_usage, event_id, next_seq
from ._run import bad_quantity, check_name
from .context import SCOPE, Scope
from .errors import DripValidationError

if TYPE_CHECKING:
    from ._instrumentation import Instrumentation
    from ._run import Run

__all__ = ["EventHandle", "current_event"]

logger = logging.getLogger("drip")

_get, _set, _reset = SCOPE.get, SCOPE.set, SCOPE.reset
_perf = time.perf_counter_ns
_span = _otel.span_context
#: handles given out by ``current_event()``, by sequence number; popped when the call ends
_handles: dict[int, EventHandle] = {}
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
        if bad_quantity(n) is not None:
            self._bad = f"{n!r} ({bad_quantity(n)})"
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
    handle = _handles.get(seq)
    if handle is None:
        handle = _handles.setdefault(seq, EventHandle(seq, run is None))
    return handle


class _Spec:
    """Everything one ``@metered(...)`` fixed at decoration time."""

    __slots__ = ("customer", "customer_fn", "instr", "m", "name", "qconst", "qfn")

    def __init__(self, instr: Instrumentation | None, m: MeterSpec, name: str) -> None:
        self.instr = instr
        self.m = m
        self.name = name
        self.qconst: float | None = 1
        self.qfn: Callable[[Any], Any] | None = None
        self.customer: str | None = None
        self.customer_fn: Callable[..., Any] | None = None


class _Call:
    """One metered call on the general path (usage records, generators, callables, handles)."""

    __slots__ = ("enc", "instr", "owner", "parent", "scope", "seq", "sink", "span", "spec", "t0")

    def __init__(
        self,
        spec: _Spec,
        instr: Instrumentation | None,
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
        handle = _handles.pop(self.seq, None) if _handles else None
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
        if quantity is not None and bad_quantity(quantity) is not None:
            problem = f"the quantity {bad_quantity(quantity)}"
            quantity = None
        if quantity is None:
            quantity = 0  # unknown (the call failed, or see the problem): say so, not 1
        error_type = None if exc is None else type(exc).__name__
        self.sink((
            self.enc, spec.m, self.owner, self.parent, self.seq, self.t0, t1, quantity,
            error_type, self.span, meta,
        ))  # fmt: skip
        if problem is not None and self.instr is not None:
            err = DripValidationError(
                f"@metered({spec.m.meter!r}) on {spec.name}: {problem}; recorded with quantity 0",
                field="quantity",
            )
            try:
                self.instr.report(err)
            except DripValidationError:
                if exc is None and evaluate:
                    raise  # strict mode, and no exception of the caller's to hide


def _in_run(
    spec: _Spec, customer: str | None, run: Run, parent: int | None, seq: int, span: Any, t0: int
) -> _Call:
    """The general path for a call of a run that the fast path began."""
    return _Call(
        spec, run._instr, run._append, encode_event, run, (customer, run, seq), parent, seq,
        span, t0,
    )  # fmt: skip


def _begin(spec: _Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
    """Start a metered call in the current context (None: it cannot be recorded)."""
    scope = _get()
    customer, run, parent = scope
    if run is not None:
        seq = next_seq()
        return _in_run(spec, customer, run, parent, seq, _otel.span_context(), _perf())
    instr = resolve(spec.instr)
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
                f"@metered({spec.m.meter!r}) on {spec.name} was called outside any run and "
                "without a customer, so it is not recorded: open a drip.run(..., customer_id=) "
                "or drip.customer(...), or pass customer_id= to the decorator",
                field="customer_id",
            )
        )
        return None
    seq = next_seq()
    _otel.refresh()
    span = None if _otel.CV is None else _span()
    return _Call(
        spec, instr, instr.append, encode_usage, customer, (customer, None, seq), parent, seq,
        span, _perf(),
    )  # fmt: skip


def _general_sync(spec: _Spec, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
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


async def _general_async(
    spec: _Spec, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
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


def _begin_in(ctx: contextvars.Context, spec: _Spec, args: Any, kwargs: Any) -> _Call | None:
    """Begin a generator's call inside its own context, and make it current there."""

    def begin() -> _Call | None:
        call = _begin(spec, args, kwargs)
        if call is not None:
            _set(call.scope)  # the context is the generator's own: never reset
        return call

    return ctx.run(begin)
