"""Meter Anthropic calls: ``instrument()`` once, and every message records its tokens.

::

    from drip.integrations import anthropic as drip_anthropic
    drip_anthropic.instrument()            # every Anthropic / AsyncAnthropic client
    drip_anthropic.instrument(client)      # or one client

Metered: ``messages.create`` (sync, async, ``stream=True``), ``messages.parse`` and
``messages.stream()`` (which does not go through ``create``), ``with_raw_response`` and
``with_streaming_response`` too (see ``_Raw``). Each call records one event (see
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
import json
import weakref
from collections.abc import Callable
from typing import Any

import wrapt

from ._llm import LLMCall, StreamState, Usage, count, safely, watch
from ._patches import Patches, method_wrapper
from ._requires import requires

anthropic = requires("anthropic", extra="anthropic")
from anthropic._response import APIResponse, AsyncAPIResponse  # noqa: E402  (after the check)

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


def _json_usage(usage: Any) -> Usage | None:
    """The usage object of a message's JSON (a raw body drip decodes itself)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("output_tokens_details")
    thinking = count(details.get("thinking_tokens", 0)) if isinstance(details, dict) else 0
    return _usage({f: count(usage.get(f, 0)) for f in _FIELDS}, thinking)


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
    def __init__(self, meter: str, kwargs: dict[str, Any], instance: Any = None) -> None:
        model = kwargs.get("model")
        self.kwargs = kwargs
        self.model = model if isinstance(model, str) else None
        self.llm = LLMCall(meter, "anthropic")

    def result(self, result: Any) -> Any:
        if isinstance(result, (APIResponse, AsyncAPIResponse)):  # with_raw / streaming_response
            return (_AsyncRaw if isinstance(result, AsyncAPIResponse) else _Raw)(result, self)
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


def _from_body(response: Any, call: _Call) -> bool:
    """Record a plain (not SSE) raw response from its body, if it has been read; True if so."""
    if call.llm.finished or response._is_sse_stream:
        return call.llm.finished
    try:
        content = response.http_response.content  # raises while a streamed body is unread
    except Exception:
        return False
    message = safely(json.loads, content)
    if not isinstance(message, dict):
        return False
    model = message.get("model")
    usage = safely(_json_usage, message.get("usage"))
    call.llm.finish_tokens(model if isinstance(model, str) else call.model, usage)
    return True


def _dropped(response: Any, call: _Call) -> None:
    """A raw response let go of: from its body if read, else unknown (``complete: false``)."""
    if call.llm.stream is not None:  # parsed into a watched stream: what it saw
        call.llm.end_stream()
    elif not _from_body(response, call):
        stream = bool(response._is_sse_stream)
        call.llm.finish_tokens(call.model, None, streamed=stream, complete=False)


class _Raw(wrapt.ObjectProxy):  # type: ignore[misc,type-arg,unused-ignore]  # generic or untyped, by version
    """``with_raw_response`` / ``with_streaming_response``: the SDK's ``APIResponse``. A body
    already read (``with_raw_response``) is recorded at once; otherwise from what ``.parse()``
    gives (a message, or a stream watched as any other), or, when the response is closed
    (leaving ``with``) or let go of, from the body the caller read (``.read()`` / ``.json()`` / ``.text()``). A body never read
    (or an SSE body read raw, which drip does not decode) records ``complete: false``."""

    def __init__(self, wrapped: Any, call: _Call) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_parsed: Any = None
        if not _from_body(wrapped, call):
            weakref.finalize(self, _dropped, wrapped, call)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_take(self.__wrapped__.parse(*args, **kwargs), args or kwargs)

    def close(self) -> None:  # leaving ``with_streaming_response``'s ``with``
        try:
            self.__wrapped__.close()
        finally:
            _dropped(self.__wrapped__, self._self_call)

    def _self_take(self, parsed: Any, custom: Any) -> Any:
        if custom:  # ``parse(to=...)``: the caller's own type
            return parsed
        if self._self_parsed is None:
            self._self_parsed = self._self_call.result(parsed)
        return self._self_parsed


class _AsyncRaw(_Raw):
    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_take(await self.__wrapped__.parse(*args, **kwargs), args or kwargs)

    async def close(self) -> None:  # type: ignore[override]
        try:
            await self.__wrapped__.close()
        finally:
            _dropped(self.__wrapped__, self._self_call)


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
