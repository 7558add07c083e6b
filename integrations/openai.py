"""Meter OpenAI calls: ``instrument()`` once, and every completion records its tokens.

::

    from drip.integrations import openai as drip_openai
    drip_openai.instrument()            # every OpenAI / AsyncOpenAI / AzureOpenAI client
    drip_openai.instrument(client)      # or one client

Metered: ``chat.completions.create`` / ``.parse`` / ``.stream()`` and ``responses.create`` /
``.parse`` / ``.stream()``, sync and async, ``stream=True``, and ``with_raw_response``. Each
call records one event (see ``drip.integrations._llm``) in the current run, under the current
metered call.

Chat streams carry usage only when asked (``stream_options={"include_usage": True}``). When
the caller did not ask, drip asks, and takes the extra final chunk (empty ``choices``, the whole
request's ``usage``) out of the stream: the caller's loop sees exactly the chunks it would have
seen without drip, so code that reads ``chunk.choices[0]`` keeps working. A caller that asked
for usage gets the chunk, as usual.
"""

from __future__ import annotations

import functools
from typing import Any

import wrapt

from ._llm import AsyncStream, LLMCall, StreamState, SyncStream, Usage, count, safely
from ._patches import Patches, method_wrapper
from ._requires import requires

openai = requires("openai", extra="openai")
from openai._legacy_response import LegacyAPIResponse  # noqa: E402  (after the check above)

__all__ = ["instrument", "uninstrument"]

_patches = Patches()
_CHAT, _RESPONSES = "chat", "responses"


def _chat_usage(usage: Any) -> Usage:
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=count(usage.prompt_tokens),
        output_tokens=count(usage.completion_tokens),
        cached_input_tokens=count(getattr(prompt, "cached_tokens", 0)),
        cache_creation_input_tokens=count(getattr(prompt, "cache_write_tokens", 0)),
        reasoning_tokens=count(getattr(completion, "reasoning_tokens", 0)),
    )


def _responses_usage(usage: Any) -> Usage:
    details = getattr(usage, "input_tokens_details", None)
    output = getattr(usage, "output_tokens_details", None)
    return Usage(
        input_tokens=count(usage.input_tokens),
        output_tokens=count(usage.output_tokens),
        cached_input_tokens=count(getattr(details, "cached_tokens", 0)),
        cache_creation_input_tokens=count(getattr(details, "cache_write_tokens", 0)),
        reasoning_tokens=count(getattr(output, "reasoning_tokens", 0)),
    )


def _usage_of(api: str, response: Any) -> Usage | None:
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    return _chat_usage(usage) if api == _CHAT else _responses_usage(usage)


class _ChatStream(StreamState):
    def __init__(self, model: str | None, hide_usage_chunk: bool) -> None:
        super().__init__(model)
        self.hide = hide_usage_chunk

    def feed(self, chunk: Any) -> bool:
        self.model = getattr(chunk, "model", None) or self.model
        usage = getattr(chunk, "usage", None)
        if usage is None:
            return True
        self.usage, self.done = _chat_usage(usage), True
        return not (self.hide and not chunk.choices)


class _ResponsesStream(StreamState):
    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def feed(self, event: Any) -> bool:
        response = getattr(event, "response", None)
        if response is not None:
            self.model = getattr(response, "model", None) or self.model
            if event.type in self._FINAL:
                self.usage = _usage_of(_RESPONSES, response)
                self.done = True
        return True


def _prepare(api: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask a chat stream for its usage if the caller did not; True if drip asked."""
    if api != _CHAT or kwargs.get("stream") is not True:
        return kwargs, False
    options = kwargs.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return kwargs, False
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    return {**kwargs, "stream_options": options}, True


class _Call:
    """One intercepted call: begun before the request, finished by its result or stream."""

    def __init__(self, meter: str, api: str, kwargs: dict[str, Any]) -> None:
        self.api = api
        self.model = kwargs.get("model") if isinstance(kwargs.get("model"), str) else None
        self.kwargs, self.hide = _prepare(api, kwargs)
        self.llm = LLMCall(meter, "openai")

    def state(self) -> StreamState:
        if self.api == _CHAT:
            return _ChatStream(self.model, self.hide)
        return _ResponsesStream(self.model)

    def result(self, result: Any) -> Any:
        if isinstance(result, openai.Stream):
            return SyncStream(result, self.llm, self.state())
        if isinstance(result, openai.AsyncStream):
            return AsyncStream(result, self.llm, self.state())
        if isinstance(result, LegacyAPIResponse):
            return _RawResponse(result, self)
        model = getattr(result, "model", None) or self.model
        self.llm.finish_tokens(model, safely(_usage_of, self.api, result))
        return result

    def failed(self, exc: BaseException) -> None:
        self.llm.finish_tokens(self.model, None, error=exc)


class _RawResponse(wrapt.ObjectProxy):  # type: ignore[misc]
    """``with_raw_response``: the call is recorded from what ``.parse()`` gives."""

    def __init__(self, wrapped: Any, call: _Call) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_parsed: Any = None
        if not getattr(wrapped, "_stream", False):
            self.parse()  # the body is already read: record now, not when (if) parse is called

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        if args or kwargs:
            return parsed
        if self._self_parsed is None:
            self._self_parsed = self._self_call.result(parsed)
        return self._self_parsed


def _targets(client: Any) -> list[tuple[Any, str, str, bool]]:
    """(owner, method, api, is_async) for every method drip meters."""
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.responses import AsyncResponses, Responses

    if client is None:
        owners = [(Completions, _CHAT, False), (AsyncCompletions, _CHAT, True),
                  (Responses, _RESPONSES, False), (AsyncResponses, _RESPONSES, True)]  # fmt: skip
    else:
        is_async = isinstance(client, openai.AsyncOpenAI)
        owners = [(client.chat.completions, _CHAT, is_async),
                  (client.responses, _RESPONSES, is_async)]  # fmt: skip
    return [(owner, method, api, is_async)
            for owner, api, is_async in owners for method in ("create", "parse")]  # fmt: skip


def instrument(client: Any = None, *, meter: str = "llm_tokens") -> None:
    """Meter one client's calls, or (``client=None``) every OpenAI client's; idempotent."""
    for owner, method, api, is_async in _targets(client):
        begin = functools.partial(_Call, meter, api)
        _patches.wrap(owner, method, method_wrapper(begin, is_async))


def uninstrument() -> None:
    """Undo every ``instrument()``: the original methods are back."""
    _patches.undo()
