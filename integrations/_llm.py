"""What the LLM integrations share: token usage -> one drip event, and exact streams.

One LLM call records one event (see ``LLMCall``): event type / meter ``meter``, units
``tokens``, quantity = input + output tokens, metadata ``provider``, ``model``,
``input_tokens``, ``output_tokens``, ``cached_input_tokens``, ``cache_creation_input_tokens``,
``reasoning_tokens``, ``streamed``, ``complete`` and ``cost_usd`` when the model is priced
(``drip.pricing``). Token counts are normalised so every provider means the same thing:
``input_tokens`` includes cache reads and writes (Anthropic reports them apart, OpenAI
includes them), ``output_tokens`` includes reasoning.

The event is an "event ended later" of drip's core (``drip._metered.begin_later``): begun
when the call starts, in the context current then (so it joins the current run, nests under the
current metered call, or becomes a usage record of the current customer, with the same
lenient/strict rule as ``@metered``), made current while the provider call runs (so what the
call does nests under it), and ended once, from whatever thread or task sees the end.

Streams are metered in place (``watch``): the caller keeps the SDK's own stream object, whose
item generator drip wraps once, and a provider-specific ``StreamState`` reads the items that can
carry usage. The event is finished exactly once: on exhaustion, on ``close()``, on leaving
``with``, on an error while iterating, when garbage-collected, or at the process's exit. A stream that ends before the
provider's end (its final usage, or its end marker) records what was seen so far with
``complete: false``: the caller left early, or the connection was cut.

A call that ended as the provider meant it to (a plain answer, or a stream read to the
provider's end) but carries no usage at all (an OpenAI-compatible proxy or provider that ignores
``stream_options={"include_usage": True}``, a response whose ``usage`` is null) records quantity
0, no token fields (absent, never guessed) and metadata ``usage: "missing"``, without
``complete: false``: a configuration problem to fix, not a stream someone abandoned. It is
logged (a warning on the ``drip`` logger) once per provider, model and endpoint, saying what to
do.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from drip import pricing
from drip._default import default_recorder
from drip._metered import Later, begin_later, later_spec

from . import _readon

__all__ = [
    "LLMCall",
    "StreamState",
    "Usage",
    "aread_on",
    "end_stream",
    "read_on",
    "safely",
    "watch",
]

logger = logging.getLogger("drip")


@dataclass
class Usage:
    """Normalised token counts of one call (see the module docstring)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total(self) -> int:
        """Billed tokens: input (cache included) + output (reasoning included)."""
        return self.input_tokens + self.output_tokens


def count(value: Any) -> int:
    """A token count from an SDK field that may be None or missing."""
    if value.__class__ is int:  # the common case first, without isinstance calls
        return value  # type: ignore[no-any-return,unused-ignore]  # narrowed by newer mypy
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def safely(fn: Callable[..., Any], *args: Any) -> Any:
    """Call an extractor; a surprise in a provider's object is logged, never raised."""
    try:
        return fn(*args)
    except Exception:
        logger.exception(
            "drip: %s failed; the call is recorded without it", getattr(fn, "__name__", fn)
        )
        return None


_specs: dict[tuple[str, str | None], Any] = {}


def _spec(meter: str, units: str | None) -> Any:
    spec = _specs.get((meter, units))
    if spec is None:
        spec = _specs[(meter, units)] = later_spec(
            None, default_recorder, meter, units, f"an LLM call ({meter})"
        )
    return spec


class LLMCall:
    """One metered call, begun now (in ``context`` if given) and finished exactly once.

    If it is dropped unfinished (a bug, or an SDK that never reported an end), it is recorded
    when garbage-collected, with quantity 0 and ``complete: false`` (a stream's call: with
    what its stream saw, see ``end_stream``).
    """

    #: the state of the stream this call returned (``watch``), if it streams
    stream: StreamState | None = None
    #: what to do when this call ends without usage, if the integration knows better than
    #: the generic advice (see ``_usage_missing``)
    missing_hint = ""

    def __init__(
        self,
        meter: str,
        provider: str,
        *,
        units: str | None = "tokens",
        context: contextvars.Context | None = None,
        capture_context: bool = False,
    ) -> None:
        self.provider = provider
        #: whether the call streams, for integrations that learn it at the start
        self.streamed = False
        spec = _specs.get((meter, units)) or _spec(meter, units)
        self.event: Later | None = begin_later(spec, context)
        #: True when the event is recorded (False: no run and no customer, lenient mode)
        self.recording = self.event is not None
        #: the context of this call's event (children begun in it nest under it)
        self.context: contextvars.Context | None = None
        if capture_context:
            if self.event is not None:
                self.context = self.event.context(context)
            else:
                self.context = contextvars.copy_context() if context is None else context.copy()

    @property
    def finished(self) -> bool:
        """True once the event has been recorded (or when it is not recorded at all)."""
        return self.event is None or self.event.ended

    def finish_tokens(
        self,
        model: str | None,
        usage: Usage | None,
        *,
        error: BaseException | None = None,
        streamed: bool = False,
        complete: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Finish as an LLM call: token metadata, cost, quantity (0 when usage is unknown)."""
        event = self.event
        if event is None or event.ended:
            return
        meta: dict[str, Any] = {"provider": self.provider, "model": model, "streamed": streamed}
        quantity = 0
        if usage is not None:
            meta["input_tokens"] = usage.input_tokens
            meta["output_tokens"] = usage.output_tokens
            meta["cached_input_tokens"] = usage.cached_input_tokens
            meta["cache_creation_input_tokens"] = usage.cache_creation_input_tokens
            meta["reasoning_tokens"] = usage.reasoning_tokens
            quantity = usage.input_tokens + usage.output_tokens
            try:
                price = pricing.cost(
                    model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    reasoning_tokens=usage.reasoning_tokens,
                )
            except Exception:  # a bad DRIP_PRICES file: logged, never raised into the call
                logger.exception("drip: pricing failed; the call is recorded without cost_usd")
                price = None
            if price is not None:
                meta["cost_usd"] = price
        elif error is None and complete:  # ended as meant, yet no usage: say so (see above)
            meta["usage"] = "missing"
            _usage_missing(self.provider, model, streamed, self.stream, self.missing_hint)
        if not complete:
            meta["complete"] = False
        if extra:
            meta.update(extra)
        try:
            event.end(quantity, meta, error)
        except Exception:  # strict mode: a bad quantity is raised after it was recorded
            logger.exception("drip: recording an LLM call failed")

    def finish(
        self, quantity: float, metadata: dict[str, Any], error: BaseException | None = None
    ) -> None:
        """Record the event now, once; later calls do nothing."""
        if self.event is None:
            return
        try:
            self.event.end(quantity, metadata, error)
        except Exception:  # strict mode: a bad quantity is raised after it was recorded
            logger.exception("drip: recording an LLM call failed")

    def _reads_on(self, step: str) -> Any:
        """The SDK's unread items (with a ``step`` method: sync or async) if the caller left
        the stream where the usage comes next (``StreamState.finishing``), else None; once."""
        state = self.stream
        if state is None or not hasattr(state.rest, step) or state.done or self.finished:
            return None
        rest, state.rest = state.rest, None
        return rest if safely(state.finishing) else None

    def read_on(self) -> None:
        """A caller that left a stream at its ``finish_reason`` (``break``, then ``close()``,
        leaving ``with``, or dropping it) has been billed: the usage follows in the next item,
        normally in the same network read. drip reads on for it, at most
        ``_readon.READ_ON_SECONDS`` (never blocking longer on the network: openai's ``_Gate``),
        before the stream is closed (an async stream dropped unclosed: in a task,
        ``_readon.later``). Not there in time (a slow server, a dropped connection): the call stays
        ``complete: false`` without tokens, as any abandoned stream. Never raises."""
        rest = self._reads_on("__next__")
        if rest is None:
            return
        state = self.stream
        assert state is not None
        state.deadline = time.monotonic() + _readon.READ_ON_SECONDS
        try:
            for item in rest:
                state.take(item)
                if state.done or time.monotonic() > state.deadline:
                    break
        except Exception:  # the connection failed or closed: what was read stays
            pass
        finally:
            state.deadline = None
        _readon.missed(self)

    async def aread_on(self) -> None:
        """``read_on`` for an async stream: each item awaited at most until the deadline."""
        rest = self._reads_on("__anext__")
        if rest is None:
            return
        state = self.stream
        assert state is not None
        import anyio  # the async SDKs' own dependency

        deadline = time.monotonic() + _readon.READ_ON_SECONDS
        try:
            while not state.done:
                with anyio.move_on_after(deadline - time.monotonic()) as scope:
                    item = await rest.__anext__()
                if scope.cancelled_caught:
                    break
                state.take(item)
        except Exception:  # ran out (StopAsyncIteration), failed, or closed
            pass
        _readon.missed(self)

    def end_stream(self, error: BaseException | None = None, ran_out: bool = False) -> None:
        """Finish a streamed call from what its stream saw (once; later calls do nothing).
        ``ran_out``: the stream's items ran out (not closed early, not raised)."""
        state = self.stream
        event = self.event
        if state is None or event is None or event.ended:
            return
        if error is None and not ran_out:
            self.read_on()
        if not state.done and state.last is not None:
            safely(state.seen, state.last)
            if ran_out and error is None:
                safely(state.ended)
        self.finish_tokens(
            state.model, state.usage, error=error, streamed=True, complete=state.done
        )

    def __del__(self) -> None:
        if self.event is not None and not self.event.ended:
            if self.stream is not None:  # a stream dropped before its generator ran, or
                if not _readon.later(self):  # collected in one cycle with it, this call
                    self.end_stream()  # first
            else:
                self.finish(0, {"provider": self.provider, "complete": False})


#: (provider, model, endpoint) already warned of a call without usage; bounded
_missing_warned: set[tuple[str, str | None, str | None]] = set()
_MISSING_HINT = (
    "make the provider (or the proxy in between) report usage, or meter these calls yourself"
)


def _usage_missing(
    provider: str, model: str | None, streamed: bool, state: Any, hint: str = ""
) -> None:
    """Warn, once per provider, model and endpoint, of a call that ended with no usage."""
    endpoint = None if state is None else safely(state.endpoint)
    key = (provider, model, endpoint)
    if key in _missing_warned or len(_missing_warned) >= 256:
        return
    _missing_warned.add(key)
    hint = (state.missing_hint if state is not None else "") or hint or _MISSING_HINT
    logger.warning(
        "drip: %s %s for model %r%s ended with no token usage; recorded with quantity 0 and "
        "metadata usage='missing' (not an abandoned call): %s. Said once per model and endpoint.",
        provider, "stream" if streamed else "call", model,
        f" from {endpoint}" if endpoint else "", hint,
    )  # fmt: skip


class StreamState:
    """What one stream saw so far; subclasses read the provider's items (see ``watch``).

    ``key`` names the attribute that tells whether an item can carry usage: ``feed`` reads
    only the items where it is not None (an OpenAI chat stream: ``usage``, set on its last
    chunk only), so the other items cost one C-level attribute read. A state that must see
    every item uses an attribute every item has (``type``).
    """

    key = "type"
    #: the SDK's HTTP response, when the integration has it (its URL names the endpoint)
    where: Any = None
    #: what to do when this kind of stream ends without usage (see ``_usage_missing``)
    missing_hint = ""
    #: the SDK's items (``watch``), which ``read_on`` reads after the caller left the stream
    rest: Any = None
    #: while ``read_on`` reads: when it gives up (``time.monotonic()``); None otherwise
    deadline: float | None = None

    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.usage: Usage | None = None
        self.done = False  # the provider's final usage (or end marker) was seen
        self.last: Any = None  # the last item the stream gave (None: none yet)

    def finishing(self) -> bool:
        """The last item shows the provider's usage comes next (an OpenAI chat chunk with a
        ``finish_reason``): a caller leaving there is read on for it (see ``read_on``)."""
        return False

    def feed(self, item: Any) -> bool:
        """Read one item whose ``key`` is set; False hides it (an item drip asked for)."""
        return True

    def seen(self, last: Any) -> None:
        """The last item the stream gave, when it ends; fills in what ``feed`` skipped (the
        model of an OpenAI chat stream cut before its usage chunk)."""

    def ended(self) -> None:
        """The items ran out (not closed early, not raised) before ``done``: set ``done`` if
        the last item shows the provider's end (a stream cut cleanly mid-message has none)."""

    def endpoint(self) -> str | None:
        """The URL the stream came from (no query), when ``where`` is an HTTP response."""
        url = getattr(getattr(self.where, "request", None), "url", None)
        return None if url is None else str(url).split("?", 1)[0]

    def take(self, item: Any) -> None:
        """Read one item outside a watched stream (a raw SSE body decoded by drip)."""
        if getattr(item, self.key, None) is not None:
            self.feed(item)
        self.last = item


def _unreadable() -> None:
    logger.exception("drip: could not read a stream item; it is passed on as it is")


def _ended(
    call: weakref.ref[LLMCall], error: BaseException | None = None, ran_out: bool = False
) -> None:
    live = call()
    if live is not None:  # None: the stream was dropped, and its call recorded then
        live.end_stream(error, ran_out)


class _Ending:
    """Ends a watched stream's call however its loop ends: run out, closed while alive
    (``GeneratorExit``), or raised; one per stream, so no cost per item."""

    __slots__ = ("call",)

    def __init__(self, call: weakref.ref[LLMCall]) -> None:
        self.call = call

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if kind is None:  # the items ran out
            _ended(self.call, None, True)
        else:
            _ended(self.call, None if kind is GeneratorExit else exc)


def _watched(items: Iterator[Any], call: weakref.ref[LLMCall], state: StreamState) -> Iterator[Any]:
    look, feed = attrgetter(state.key), state.feed
    with _Ending(call):
        for item in items:
            state.last = item
            try:
                if look(item) is not None and not feed(item):
                    continue  # an item drip asked for, hidden from the caller
            except Exception:
                _unreadable()
            yield item


async def _awatched(
    items: AsyncIterator[Any], call: weakref.ref[LLMCall], state: StreamState
) -> AsyncIterator[Any]:
    look, feed = attrgetter(state.key), state.feed
    with _Ending(call):
        try:
            async for item in items:
                state.last = item
                try:
                    if look(item) is not None and not feed(item):
                        continue  # an item drip asked for, hidden from the caller
                except Exception:
                    _unreadable()
                yield item
        except GeneratorExit:  # closed (aclose), maybe right after a finish_reason
            live = call()
            if live is not None:
                await live.aread_on()
            raise


def _sync_close(base: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(base)
    def close(self: Any) -> None:
        try:
            try:
                self.__dict__[_CALL].read_on()  # before the response is closed
            finally:
                base(self)
        finally:
            self.__dict__[_CALL].end_stream()

    return close


def _async_close(base: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    @functools.wraps(base)
    async def close(self: Any) -> None:
        try:
            try:  # before the response is closed (which a cancellation here must not skip)
                await self.__dict__[_CALL].aread_on()
            finally:
                await base(self)
        finally:
            self.__dict__[_CALL].end_stream()

    return close


def _self(stream: Any) -> Any:
    return stream


_CALL = "_drip_call"
_classes: dict[type, type] = {}


def _watched_class(cls: type, is_async: bool) -> type:
    """``cls`` with ``close`` ending the call: same name, same layout, made once per class."""
    sub = _classes.get(cls)
    if sub is None:  # ``close`` in the body: a mixin base would change the layout
        body: dict[str, Any] = {"__slots__": (), "__module__": cls.__module__,
                                "__qualname__": cls.__qualname__}  # fmt: skip
        if is_async:
            body["close"] = _async_close(cls.close)  # type: ignore[attr-defined]
            body["__aiter__"] = _self  # see ``watch``
        else:
            body["close"] = _sync_close(cls.close)  # type: ignore[attr-defined]
        sub = _classes.setdefault(cls, type(cls.__name__, (cls,), body))
    return sub


def watch(stream: Any, call: LLMCall, state: StreamState, *, is_async: bool) -> Any:
    """Meter an SDK stream (openai / anthropic ``Stream`` or ``AsyncStream``) in place.

    The caller gets the SDK's own object back. Its ``_iterator`` (the SDK's generator of
    parsed items, which both ``__iter__`` and ``__next__`` pull from) is wrapped once in a
    generator of drip's, and its class is swapped once for a subclass whose ``close()`` also
    ends the call. Per item drip adds one generator step, one attribute store and one
    attribute read; per stream, no proxy and no finalizer. The call is recorded once: at the
    end of the items, on an error while iterating, on ``close()`` / leaving ``with``, or
    when the stream is dropped.

    A dropped stream's call is recorded as soon as the stream is freed, with what its items
    said: only the stream holds the call (drip's generator holds it weakly), so
    ``LLMCall.__del__`` records it. That needs a stream no cycle holds: openai's makes its item
    generator on itself (the generator's frame holds the stream, so only the cyclic GC would
    free it, maybe after the run ended), so drip reads the items through a copy of it, as
    anthropic's SDK does. And asyncio keeps a dropped async generator alive until a task of
    its own closes it; the SDK's ``__aiter__`` is one, and holds the stream: so a watched async
    stream is its own async iterator (``__aiter__`` returns it; the SDK's ``__anext__`` pulls
    from the same items).
    """
    call.stream = state
    _open.add(call)
    attrs = vars(stream)
    if "_iterator" in attrs:  # made on the stream itself (openai): its frame holds the stream
        twin = object.__new__(type(stream))  # so read through a copy, as anthropic's SDK
        twin.__dict__ = {k: v for k, v in attrs.items() if k != "_iterator"}  # does: no cycle
        items = twin.__stream__()
    else:  # anthropic: a cached_property, already made on a copy
        items = stream._iterator
    attrs[_CALL] = call
    state.rest = items
    attrs["_iterator"] = (_awatched if is_async else _watched)(items, weakref.ref(call), state)
    cls = type(stream)
    stream.__class__ = _classes.get(cls) or _watched_class(cls, is_async)
    return stream


#: the calls of watched streams, while they live: ended at exit (see ``_end_open_at_exit``)
_open: weakref.WeakSet[LLMCall] = weakref.WeakSet()


def _end_open_at_exit() -> None:
    """The process is ending with streams still open (held by a long-lived object, read by a
    daemon thread): record each with what it saw, ``complete: false``, before drip's own exit
    hook delivers (registered after it, so run before it); dropped after it, they were lost."""
    for call in list(_open):
        try:
            call.end_stream()
        except Exception:  # never stand between the process and its end
            logger.exception("drip: recording an open stream at exit failed")


atexit.register(_end_open_at_exit)


def read_on(stream: Any) -> None:
    """``LLMCall.read_on`` of a stream ``watch`` metered (a stream drip does not watch:
    nothing); for wrappers that close its HTTP response themselves (openai's helpers)."""
    call = getattr(stream, "__dict__", {}).get(_CALL)
    if call is not None:
        call.read_on()


async def aread_on(stream: Any) -> None:
    call = getattr(stream, "__dict__", {}).get(_CALL)
    if call is not None:
        await call.aread_on()


def end_stream(stream: Any, error: BaseException | None = None) -> None:
    """End the call of a stream ``watch`` metered (once; later calls do nothing; a stream
    drip does not watch: nothing)."""
    call = getattr(stream, "__dict__", {}).get(_CALL)
    if call is not None:
        call.end_stream(error)
