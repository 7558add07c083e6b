"""The four wrappers ``@metered`` chooses from: function, coroutine, generator, async generator.

The function and coroutine wrappers inline the common case (a call inside a run with a fixed
quantity) and hand everything else to the general path (``_call``). Generators run each step in their own
copy of the context (``Context.run``; for async generators each synchronous slice of each step),
so what the body sets never leaks into the consumer and the consumer's later changes never
reach the body.

The function wrapper's common case is also compiled (``drip/_speedups.c``: the same steps
without a Python frame, calling back into ``on_raise`` / ``on_handles`` / the general path here
for the rest), and so are the steps around a coroutine's call. They are used when the module
was built and ``DRIP_PURE_PYTHON`` is not set (``drip._compiled``); ``COMPILED`` says which.
The Python wrappers below stay the reference both are tested against.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from .. import otel as _otel
from .._compiled import speedups
from .._records import FAST, SEQ
from ..context import SCOPE
from ._call import Spec, begin_in, general_async, general_sync, handles, in_run

__all__ = ["COMPILED", "wrap_async_generator", "wrap_coroutine", "wrap_function",
           "wrap_generator"]  # fmt: skip

_get, _set, _reset = SCOPE.get, SCOPE.set, SCOPE.reset
_perf = time.perf_counter_ns
_context_of = _otel.context_of
_span_id = _otel.span_id


def on_raise(
    spec: Spec, customer: str | None, run: Any, parent: int | None, seq: int, span: Any,
    t0: int, t1: int, exc: BaseException,
) -> None:  # fmt: skip
    """A metered call in a run raised ``exc`` (which the wrapper re-raises)."""
    in_run(spec, customer, run, parent, seq, _context_of(span), t0).finish(t1, None, exc)


def on_handles(
    spec: Spec, customer: str | None, run: Any, parent: int | None, seq: int, span: Any,
    t0: int, t1: int, result: Any,
) -> None:  # fmt: skip
    """A metered call in a run returned while ``current_event()`` handles exist."""
    in_run(spec, customer, run, parent, seq, _context_of(span), t0).finish(t1, result)


def span_of(span: Any) -> int | None:
    """The id of the span current when a call began (``drip.otel.LAST``)."""
    last = _otel.LAST
    return last[1] if last[0] is span else _span_id(span)


def _compiled() -> Any:
    """``drip._speedups`` bound to this module's objects, or None (see ``drip._compiled``)."""
    if speedups is None:
        return None
    try:
        speedups.bind(
            scope=SCOPE, seq=SEQ, otel=vars(_otel), handles=handles, fast=FAST,
            general=general_sync, on_raise=on_raise, on_handles=on_handles, span_id=span_of,
            perf=_perf,
        )  # fmt: skip
    except ImportError:  # bound in another interpreter of this process: the Python path here
        return None
    return speedups


_compiled_module = _compiled()
_MeteredFunction: Any = None if _compiled_module is None else _compiled_module.MeteredFunction
_begin: Any = None if _compiled_module is None else _compiled_module.begin
_end: Any = None if _compiled_module is None else _compiled_module.end
_raised: Any = None if _compiled_module is None else _compiled_module.raised
#: whether metered functions and coroutines take the compiled common case (``_speedups.c``)
COMPILED = _compiled_module is not None


def wrap_function(fn: Callable[..., Any], spec: Spec) -> Callable[..., Any]:
    if spec.qfn is not None:  # the quantity comes from the result: always the general path

        @functools.wraps(fn)
        def metered_by_result(*args: Any, **kwargs: Any) -> Any:
            return general_sync(spec, fn, args, kwargs)

        return metered_by_result
    tail = spec.m.fast_tail(spec.qconst)
    if _MeteredFunction is not None:
        compiled = _MeteredFunction(fn, spec, tail)
        functools.update_wrapper(compiled, fn)
        return compiled  # type: ignore[no-any-return]

    @functools.wraps(fn)
    def metered_call(*args: Any, **kwargs: Any) -> Any:
        customer, run, parent = _get()
        if run is None or (head := run._fast) is None:  # outside a run, or its first call
            return general_sync(spec, fn, args, kwargs)
        seq = next(SEQ)
        token = _set((customer, run, seq))
        # the current span object, two C calls; its id from ``LAST`` (see drip.otel)
        span = None if _otel.CV is None else _otel.CV.get().get(_otel.KEY)
        t0 = _perf()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            t1 = _perf()
            _reset(token)
            on_raise(spec, customer, run, parent, seq, span, t0, t1, exc)
            raise
        t1 = _perf()
        _reset(token)
        if handles:  # current_event() may have been used inside
            on_handles(spec, customer, run, parent, seq, span, t0, t1, result)
        else:
            if span is not None:
                span = span_of(span)
            lane = run._lane  # the fast lane, inline: no Python frame (see drip._recorder.Lane)
            q = lane.q
            # only ints, strings and None, kept flat (the tuple is freed at once): nothing the GC
            # tracks (see drip._records); ``+=`` is ``extend`` without a method call
            if len(q) < lane.soft:
                q += (FAST, head, tail, parent, seq, t0, t1, span)
            else:
                lane.append((FAST, head, tail, parent, seq, t0, t1, span))
        return result

    return metered_call


def wrap_coroutine(fn: Callable[..., Awaitable[Any]], spec: Spec) -> Callable[..., Any]:
    if spec.qfn is not None:

        @functools.wraps(fn)
        async def metered_by_result(*args: Any, **kwargs: Any) -> Any:
            return await general_async(spec, fn, args, kwargs)

        return metered_by_result
    tail = spec.m.fast_tail(spec.qconst)
    if _begin is not None:  # a coroutine function it must stay: its steps are compiled instead
        begin, end, raised = _begin, _end, _raised

        @functools.wraps(fn)
        async def metered_compiled(*args: Any, **kwargs: Any) -> Any:
            state = begin()  # the call's state, or None: outside a run, or its first call
            if state is None:
                return await general_async(spec, fn, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                raised(state, spec, exc)
                raise
            end(state, spec, tail, result)
            return result

        return metered_compiled

    @functools.wraps(fn)
    async def metered_call(*args: Any, **kwargs: Any) -> Any:
        customer, run, parent = _get()
        if run is None or (head := run._fast) is None:  # outside a run, or its first call
            return await general_async(spec, fn, args, kwargs)
        seq = next(SEQ)
        token = _set((customer, run, seq))
        # the current span object, two C calls; its id from ``LAST`` (see drip.otel)
        span = None if _otel.CV is None else _otel.CV.get().get(_otel.KEY)
        t0 = _perf()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            t1 = _perf()
            _reset(token)
            on_raise(spec, customer, run, parent, seq, span, t0, t1, exc)
            raise
        t1 = _perf()
        _reset(token)
        if handles:  # current_event() may have been used inside
            on_handles(spec, customer, run, parent, seq, span, t0, t1, result)
        else:
            if span is not None:
                span = span_of(span)
            lane = run._lane  # the fast lane, inline: no Python frame (see drip._recorder.Lane)
            q = lane.q
            # only ints, strings and None, kept flat (the tuple is freed at once): nothing the GC
            # tracks (see drip._records); ``+=`` is ``extend`` without a method call
            if len(q) < lane.soft:
                q += (FAST, head, tail, parent, seq, t0, t1, span)
            else:
                lane.append((FAST, head, tail, parent, seq, t0, t1, span))
        return result

    return metered_call


def wrap_generator(fn: Callable[..., Generator[Any, Any, Any]], spec: Spec) -> Any:
    @functools.wraps(fn)
    def metered_generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        ctx = contextvars.copy_context()
        call = begin_in(ctx, spec, args, kwargs)
        gen = fn(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    if thrown is None:
                        value = ctx.run(gen.send, sent)
                    else:
                        value, thrown = ctx.run(gen.throw, thrown), None
                except StopIteration as stop:
                    result = stop.value
                    break
                try:
                    sent = yield value
                except GeneratorExit:
                    ctx.run(gen.close)
                    raise
                except BaseException as exc:
                    sent, thrown = None, exc
        except GeneratorExit:  # closed early (break, or garbage-collected): not an error
            if call is not None:
                call.finish(_perf(), evaluate=False)
            raise
        except BaseException as exc:
            if call is not None:
                call.finish(_perf(), None, exc)
            raise
        if call is not None:
            call.finish(_perf(), result)
        return result

    return metered_generator


class _Step:
    """Yield one object to the event loop (or trio) and hand back what it sends."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _in_context(ctx: contextvars.Context, step: Any) -> Any:
    """Await ``step`` (an ``asend``/``athrow``/``aclose`` awaitable) with each of its
    synchronous slices run inside ``ctx``, forwarding what it yields to the event loop."""
    value: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            if thrown is None:
                suspended = ctx.run(step.send, value)
            else:
                suspended, thrown = ctx.run(step.throw, thrown), None
        except StopIteration as stop:
            return stop.value
        try:
            value = await _Step(suspended)
        except BaseException as exc:
            value, thrown = None, exc


def wrap_async_generator(fn: Callable[..., Any], spec: Spec) -> Any:
    @functools.wraps(fn)
    async def metered_async_generator(*args: Any, **kwargs: Any) -> Any:
        ctx = contextvars.copy_context()
        call = begin_in(ctx, spec, args, kwargs)
        agen = fn(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    if thrown is None:
                        value = await _in_context(ctx, agen.asend(sent))
                    else:
                        value, thrown = await _in_context(ctx, agen.athrow(thrown)), None
                except StopAsyncIteration:
                    break
                try:
                    sent = yield value
                except GeneratorExit:
                    await _in_context(ctx, agen.aclose())
                    raise
                except BaseException as exc:
                    sent, thrown = None, exc
        except GeneratorExit:
            if call is not None:
                call.finish(_perf(), evaluate=False)
            raise
        except BaseException as exc:
            if call is not None:
                call.finish(_perf(), None, exc)
            raise
        if call is not None:
            call.finish(_perf(), None)

    return metered_async_generator
