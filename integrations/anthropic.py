"""Meter Anthropic calls: ``instrument()`` once, and every message records its tokens.

::

    from drip.integrations import anthropic as drip_anthropic
    drip_anthropic.instrument()            # every Anthropic / AsyncAnthropic client
    drip_anthropic.instrument(client)      # or one client

Metered: ``messages.create`` (sync, async, ``stream=True``), ``messages.parse`` and
``messages.stream()`` (which does not go through ``create``). Each call records one event (see
``drip.integrations._llm``).

Anthropic reports ``input_tokens`` without the cache: drip's ``input_tokens`` adds cache reads
and cache writes back, so the quantity is every billed token. Stream usage is cumulative:
``message_start`` has the input and a first output count, each ``message_delta`` the running
totals, which replace (never add to) what was known. A message (or a stream that reached
``message_stop``) with no usage at all, as some proxies send, records quantity 0 with
``usage: "missing"`` and a warning once per model (see ``drip.integrations._llm``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import wrapt

from ._llm import LLMCall, StreamState, Usage, count, safely, watch
from ._patches import Patches, method_wrapper
from ._requires import requires

anthropic = requires("anthropic", extra="anthropic")

__all__ = ["instrument", "uninstrument"]

_patches = Patches()
_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
           "cache_read_input_tokens")  # fmt: skip


def _usage(raw: dict[str, int], thinking: int) -> Usage:
    cache_write, cache_read = raw["cache_creation_input_tokens"], raw["cache_read_input_tokens"]
    return Usage(
        input_tokens=raw["input_tokens"] + cache_write + cache_read,
        output_tokens=raw["output_tokens"],
        cached_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
        reasoning_tokens=thinking,
    )


def _thinking(usage: Any) -> int:
    return count(getattr(getattr(usage, "output_tokens_details", None), "thinking_tokens", 0))


def _message_usage(message: Any) -> Usage | None:
    usage = getattr(message, "usage", None)
    if usage is None:
        return None
    return _usage({f: count(getattr(usage, f, 0)) for f in _FIELDS}, _thinking(usage))


class _MessageStream(StreamState):
    """Raw stream events; every count is cumulative, so each one seen replaces the last."""

    def __init__(self, model: str | None) -> None:
        super().__init__(model)
        self.raw = dict.fromkeys(_FIELDS, 0)
        self.thinking = 0

    def _take(self, usage: Any) -> None:
        if usage is None:  # a proxy that drops it: unknown, not 0 (``usage: "missing"``)
            return
        for field in _FIELDS:
            value = getattr(usage, field, None)
            if value is not None:
                self.raw[field] = count(value)
        self.thinking = _thinking(usage) or self.thinking
        self.usage = _usage(self.raw, self.thinking)

    def feed(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.model = event.message.model or self.model
            self._take(event.message.usage)
        elif kind == "message_delta" and event.usage is not None:
            self._take(event.usage)
        elif kind == "message_stop":
            self.done = True
        return True


class _Call:
    def __init__(self, meter: str, kwargs: dict[str, Any]) -> None:
        model = kwargs.get("model")
        self.kwargs = kwargs
        self.model = model if isinstance(model, str) else None
        self.llm = LLMCall(meter, "anthropic")

    def result(self, result: Any) -> Any:
        if isinstance(result, (anthropic.Stream, anthropic.AsyncStream)):
            state = _MessageStream(self.model)
            state.where = getattr(result, "response", None)
            is_async = isinstance(result, anthropic.AsyncStream)
            return watch(result, self.llm, state, is_async=is_async)
        model = getattr(result, "model", None) or self.model
        self.llm.finish_tokens(model, safely(_message_usage, result))
        return result

    def stream(self, message_stream: Any) -> Any:
        """``messages.stream()``: meter the raw events under the SDK's ``MessageStream``."""
        raw = message_stream._raw_stream  # read lazily by MessageStream, on first iteration
        message_stream._raw_stream = self.result(raw)
        return message_stream

    def failed(self, exc: BaseException) -> None:
        self.llm.finish_tokens(self.model, None, error=exc)


class _Manager(wrapt.ObjectProxy):  # type: ignore[misc,type-arg,unused-ignore]  # generic or untyped, by version
    """``messages.stream()``'s manager: the request (and the event) starts on ``with``."""

    def __init__(self, wrapped: Any, meter: str, kwargs: dict[str, Any]) -> None:
        super().__init__(wrapped)
        self._self_meter, self._self_kwargs = meter, kwargs

    def __enter__(self) -> Any:
        call = _Call(self._self_meter, self._self_kwargs)
        try:
            stream = self.__wrapped__.__enter__()
        except BaseException as exc:
            call.failed(exc)
            raise
        return call.stream(stream)

    def __exit__(self, *exc_info: Any) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        call = _Call(self._self_meter, self._self_kwargs)
        try:
            stream = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            call.failed(exc)
            raise
        return call.stream(stream)

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)


def _stream(meter: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return _Manager(wrapped(*args, **kwargs), meter, kwargs)

    return wrapper


def instrument(client: Any = None, *, meter: str = "llm_tokens") -> None:
    """Meter one client's calls (and its ``with_options()`` / ``copy()`` clients'), or
    (``client=None``) every Anthropic client's; idempotent."""
    _instrument(client, meter, True)


def _instrument(client: Any, meter: str, undone: bool) -> None:
    from anthropic.resources.messages import AsyncMessages, Messages

    if client is None:
        owners = [(Messages, False), (AsyncMessages, True)]
    else:
        owners = [(client.messages, isinstance(client, anthropic.AsyncAnthropic))]
    for owner, is_async in owners:
        begin = functools.partial(_Call, meter)
        _patches.wrap(owner, "create", method_wrapper(begin, is_async), undone=undone)
        _patches.wrap(owner, "parse", method_wrapper(begin, is_async), undone=undone)
        _patches.wrap(owner, "stream", _stream(meter), undone=undone)
    if client is not None:
        _patches.follow_copies(client, lambda c: _instrument(c, meter, False), undone=undone)


def uninstrument() -> None:
    """Undo every ``instrument()``: the original methods are back."""
    _patches.undo()
