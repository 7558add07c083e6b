"""The OpenAI integration's readers: usage objects -> ``Usage``, and what a chat or Responses
stream says (``StreamState`` subclasses, the usage-chunk tap); see ``drip.integrations.openai``."""

from __future__ import annotations

import json
import select
import time
from types import SimpleNamespace
from typing import Any

from ._llm import StreamState, Usage, count

_CHAT, _RESPONSES = "chat", "responses"


def _chat_usage(usage: Any) -> Usage:
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    return Usage(  # positional (input, output, cached, cache write, reasoning): hot path
        count(usage.prompt_tokens),
        count(usage.completion_tokens),
        count(getattr(prompt, "cached_tokens", 0)),
        count(getattr(prompt, "cache_write_tokens", 0)),
        count(getattr(completion, "reasoning_tokens", 0)),
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
    """Usage is on the last chunk only (when asked): ``feed`` runs on that chunk alone."""

    key = "usage"
    missing_hint = (
        "the stream ended without the usage chunk that stream_options={'include_usage': True} "
        "asks for, so that server (an OpenAI-compatible provider or proxy) ignores the option: "
        "enable usage reporting there, or meter these calls yourself"
    )

    def __init__(self, model: str | None, hide_usage_chunk: bool) -> None:
        super().__init__(model)
        self.hide = hide_usage_chunk

    def feed(self, chunk: Any) -> bool:
        self.model = getattr(chunk, "model", None) or self.model
        self.usage, self.done = _chat_usage(chunk.usage), True
        return not (self.hide and not chunk.choices)

    def seen(self, last: Any) -> None:
        if not self.done:  # cut before the usage chunk: the model the chunks named
            self.model = getattr(last, "model", None) or self.model

    def ended(self) -> None:
        """Ran out with no usage: the provider's end if the last chunk closed a choice
        (``finish_reason``) or was a usage chunk (empty ``choices``) drip could not read."""
        choices = getattr(self.last, "choices", None)
        if isinstance(choices, list) and (
            not choices or any(getattr(c, "finish_reason", None) for c in choices)
        ):
            self.done = True
            if not choices and getattr(self.last, "usage", None) is not None:
                self.missing_hint = (
                    "its usage chunk came in a shape drip could not read (the error is logged "
                    "above); please report it to drip with that chunk"
                )

    def finishing(self) -> bool:
        choices = getattr(self.last, "choices", None)
        return isinstance(choices, list) and any(getattr(c, "finish_reason", None) for c in choices)

    def taken(self, data: str) -> bool:
        """An SSE event's JSON (``_UsageTap``): True if it was the usage chunk, now read."""
        try:
            chunk = json.loads(data)
            usage = chunk.get("usage") if isinstance(chunk, dict) else None
            if not isinstance(usage, dict) or chunk.get("choices") != []:
                return False
            read = _chat_usage(_obj(usage))
        except Exception:  # not the shape drip reads: the SDK parses it, ``feed`` logs it
            return False
        self.usage, self.done = read, True
        self.model = chunk.get("model") or self.model
        return True


#: how a usage object opens in an SSE chunk's JSON (compact, or with json.dumps' space); a
#: null usage (every other chunk, from OpenAI) never matches, nor can text inside a string
_USAGE_OPENS = ('"usage":{', '"usage": {')


class _UsageTap:
    """The SSE decoder of a chat stream whose usage drip asked for: drip reads the usage
    chunk from its event's JSON, and the SDK never builds an object for a chunk the caller
    will not see. That chunk is most of what asking for usage costs (``benchmarks/README.md``).

    Any event that does not look like the usage chunk, or is not one once decoded (non-empty
    ``choices``, no usage object), goes to the SDK as it came; a usage chunk in a shape the
    tap does not spot is hidden further on, by ``_ChatStream.feed``, as before.
    """

    __slots__ = ("_decoder", "_state")

    def __init__(self, decoder: Any, state: _ChatStream) -> None:
        self._decoder, self._state = decoder, state

    def iter_bytes(self, iterator: Any) -> Any:
        taken = self._state.taken
        for sse in self._decoder.iter_bytes(iterator):
            data = sse.data
            if not ((_USAGE_OPENS[0] in data or _USAGE_OPENS[1] in data) and taken(data)):
                yield sse

    async def aiter_bytes(self, iterator: Any) -> Any:
        taken = self._state.taken
        async for sse in self._decoder.aiter_bytes(iterator):
            data = sse.data
            if not ((_USAGE_OPENS[0] in data or _USAGE_OPENS[1] in data) and taken(data)):
                yield sse


def _readable(state: StreamState) -> bool:
    """While ``LLMCall.read_on`` reads: True if the next network read (if one is needed) has
    bytes before its deadline (the socket of the response, ``where``, is waited on)."""
    deadline = state.deadline
    if deadline is None:
        return True
    extensions = getattr(state.where, "extensions", None)
    network = extensions.get("network_stream") if isinstance(extensions, dict) else None
    sock = None if network is None else network.get_extra_info("socket")
    if sock is None:  # no socket known (an in-memory or HTTP/2 transport): read
        return True
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
    if pending is not None and pending() > 0:
        return True
    wait = max(0.0, deadline - time.monotonic())
    if hasattr(select, "poll"):  # no FD_SETSIZE limit (a busy process has fds past 1024)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(wait * 1000))
    ready, _, _ = select.select([sock], [], [], wait)
    return bool(ready)


class _Gate:
    """A sync stream's SSE decoder whose network reads wait at most until ``read_on``'s
    deadline (``_readable``) while drip reads on after the caller left."""

    __slots__ = ("_decoder", "_state")

    def __init__(self, decoder: Any, state: StreamState) -> None:
        self._decoder, self._state = decoder, state

    def iter_bytes(self, iterator: Any) -> Any:
        return self._decoder.iter_bytes(self._gated(iter(iterator)))

    def _gated(self, iterator: Any) -> Any:
        state = self._state
        while state.deadline is None or _readable(state):
            chunk = next(iterator, None)
            if chunk is None:
                return
            yield chunk


class _ResponsesStream(StreamState):
    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
    #: events after which the model is done (the final event, with usage, comes next)
    _FINISHING = frozenset({"response.output_text.done", "response.content_part.done",
                            "response.output_item.done"})  # fmt: skip

    def finishing(self) -> bool:
        return getattr(self.last, "type", None) in self._FINISHING

    def feed(self, event: Any) -> bool:
        response = getattr(event, "response", None)
        if response is not None:
            self.model = getattr(response, "model", None) or self.model
            if event.type in self._FINAL:
                self.usage = _usage_of(_RESPONSES, response)
                self.done = True
                if event.type == "response.failed":  # no usage here is no configuration error
                    self.missing_hint = "the response failed (response.failed) before any usage"
        return True


def _obj(value: Any) -> Any:
    """A JSON value read with attributes, as the SDK's models are (for a raw body)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{str(k): _obj(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_obj(v) for v in value]
    return value


def _json(body: bytes) -> Any:
    return _obj(json.loads(body))
