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

Streams (``SyncStream`` / ``AsyncStream``, wrapt ``ObjectProxy`` subclasses, so the caller
still holds an object that behaves as the SDK's) feed each item to a provider-specific
``StreamState`` and finish the event exactly once: on exhaustion, on ``close()``, on leaving
``with``, on an error while iterating, or when garbage-collected (``weakref.finalize``). A stream
that ends before the provider's final usage records what was seen so far with
``complete: false``.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wrapt

from drip import pricing
from drip._default import default_recorder
from drip._metered import Later, begin_later, later_spec

__all__ = ["AsyncStream", "LLMCall", "StreamState", "SyncStream", "Usage", "safely"]

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
        return value  # type: ignore[no-any-return]
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
    when garbage-collected, with quantity 0 and ``complete: false``.
    """

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

    def __del__(self) -> None:
        if self.event is not None and not self.event.ended:
            self.finish(0, {"provider": self.provider, "complete": False})


class StreamState:
    """What a provider's stream wrapper knows so far; subclasses read the items."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.usage: Usage | None = None
        self.done = False  # the provider's final usage (or end marker) was seen

    def feed(self, item: Any) -> bool:
        """Read one item; False hides it from the caller (an item drip asked for)."""
        return True


class _StreamBase(wrapt.ObjectProxy):  # type: ignore[misc]
    """Shared parts of the sync and async stream proxies."""

    def __init__(self, wrapped: Any, call: LLMCall, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_state = state
        weakref.finalize(self, _end, call, state, None)

    def _self_end(self, error: BaseException | None = None) -> None:
        _end(self._self_call, self._self_state, error)


def _end(call: LLMCall, state: StreamState, error: BaseException | None) -> None:
    event = call.event
    if event is not None and not event.ended:
        call.finish_tokens(
            state.model, state.usage, error=error, streamed=True, complete=state.done
        )


class SyncStream(_StreamBase):
    """A sync stream (``Stream``) that records its call once, however it ends."""

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Any:
        feed = self._self_state.feed
        while True:
            try:
                item = self.__wrapped__.__next__()
            except StopIteration:
                self._self_end()
                raise
            except BaseException as exc:
                self._self_end(exc)
                raise
            try:
                if feed(item):  # False: an item drip asked for, hidden from the caller
                    return item
            except Exception:
                logger.exception("drip: could not read a stream item; it is passed on as it is")
                return item

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end()

    def __enter__(self) -> SyncStream:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_end()


class AsyncStream(_StreamBase):
    """An async stream (``AsyncStream``) that records its call once, however it ends."""

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        feed = self._self_state.feed
        while True:
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_end()
                raise
            except BaseException as exc:
                self._self_end(exc)
                raise
            try:
                if feed(item):  # False: an item drip asked for, hidden from the caller
                    return item
            except Exception:
                logger.exception("drip: could not read a stream item; it is passed on as it is")
                return item

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> AsyncStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_end()
