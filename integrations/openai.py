"""Meter OpenAI calls: ``instrument()`` once, and every completion records its tokens.

::

    from drip.integrations import openai as drip_openai
    drip_openai.instrument()            # every OpenAI / AsyncOpenAI / AzureOpenAI client
    drip_openai.instrument(client)      # or one client

Metered: ``chat.completions.create`` / ``.parse`` / ``.stream()`` and ``responses.create`` /
``.parse`` / ``.stream()``, sync and async, ``stream=True``, ``with_raw_response`` and
``with_streaming_response``. Each call records one event (see ``drip.integrations._llm``) in
the current run, under the current metered call. An SDK older than the Responses API (openai
before 1.66) has its chat completions metered (``.parse`` where the SDK has it there).

The ``.stream()`` helpers' streams close the HTTP response rather than the SDK stream drip
watches; drip also hooks their ``close`` (``_watch_helpers``), so leaving their ``with`` early
records the call then, not when the helper is freed.

``with_streaming_response`` hands the caller the body to read; the call is recorded from what
the caller read (see ``_Body``): through ``.parse()`` from the SDK's objects; through
``.read()`` / ``.text()`` / ``.json()`` / ``.iter_bytes()`` / ``.iter_text()`` /
``.iter_lines()`` from those bytes, which drip decodes itself (the JSON body, or the SSE
``data:`` lines of a stream). drip never reads what the caller did not: a response left unread
or half read records the usage seen so far (none: quantity 0, no token fields) with
``complete: false``, when it is closed (leaving ``with``) or garbage-collected. A raw SSE reader
sees the usage chunk drip asked for (below): raw bytes are the wire's, never edited.

Chat streams carry usage only when asked (``stream_options={"include_usage": True}``). When
the caller did not ask (or said False), drip asks, and takes the extra final chunk (empty
``choices``, the request's ``usage``) out of the stream: the caller's loop sees exactly the
chunks it would have seen without drip, so ``chunk.choices[0]`` keeps working. drip reads that
chunk from its SSE event (``_UsageTap``): the SDK does not parse a chunk nobody will see. A
caller that asked gets the chunk, as usual. A server that refuses the option is sent the
request as the caller wrote it (``_Call.refused``).

Some OpenAI-compatible servers (proxies, other providers) ignore ``stream_options`` and never
send the usage chunk. A chat stream read to its end (its last chunk closed a choice with a
``finish_reason``, then the stream ran out) without usage is not an abandoned one: it records
quantity 0, no token fields and ``usage: "missing"`` (not ``complete: false``), and drip logs a
warning, once per model and endpoint, naming the endpoint and what to do. The same for a
Responses stream whose ``response.completed`` (or ``incomplete`` / ``failed``) event carries no
usage, and for a plain answer whose ``usage`` is null. drip does not estimate tokens. A
``background=True`` response answered ``queued`` / ``in_progress`` is not done: its event stays
open and is recorded, with the usage, by the ``responses.retrieve`` / ``.cancel`` that returns it
done (``_openai_background``). A stream
the caller leaves before that end (``break`` and close, ``with``, dropped) or that is cut before
its ``finish_reason`` stays ``complete: false``; one left right after a chunk with a
``finish_reason`` (or a Responses ``*.done`` event) is read on, bounded, for the usage that
follows (``LLMCall.read_on``, ``_Gate``).
"""

from __future__ import annotations

import functools
import json
import logging
import weakref
from typing import Any

import wrapt

from ._llm import LLMCall, StreamState, aread_on, end_stream, read_on, safely, watch
from ._openai_background import PENDING, hold, retrieve_wrapper
from ._openai_streams import (
    _CHAT,
    _RESPONSES,
    _ChatStream,
    _Gate,
    _json,
    _obj,
    _ResponsesStream,
    _usage_of,
    _UsageTap,
)
from ._patches import Patches, method_wrapper
from ._requires import requires

openai = requires("openai", extra="openai")
from openai._legacy_response import LegacyAPIResponse  # noqa: E402  (after the check above)
from openai._response import APIResponse, AsyncAPIResponse  # noqa: E402

__all__ = ["instrument", "uninstrument"]

logger = logging.getLogger("drip")
#: results drip hands back wrapped (anything else is a parsed response, recorded at once)
_WRAPPED = (openai.Stream, openai.AsyncStream, LegacyAPIResponse, APIResponse, AsyncAPIResponse)

_patches = Patches()


#: base URLs of servers that refused the ``stream_options`` drip adds (see ``_Call.refused``)
_REFUSING: set[str] = set()


def _base(instance: Any) -> str:
    """The base URL of the client a resource (``client.chat.completions``) belongs to."""
    return str(getattr(getattr(instance, "_client", None), "base_url", ""))


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

    def __init__(self, meter: str, api: str, kwargs: dict[str, Any], instance: Any = None) -> None:
        self.api = api
        self.model = kwargs.get("model") if isinstance(kwargs.get("model"), str) else None
        self.kwargs, self.hide = kwargs, False
        if kwargs.get("stream") is True and not (_REFUSING and _base(instance) in _REFUSING):
            self.kwargs, self.hide = _prepare(api, kwargs)
        self.caller_kwargs, self.instance = kwargs, instance
        self.llm = LLMCall(meter, "openai")

    def refused(self, exc: Exception) -> dict[str, Any] | None:
        """The ``stream_options`` drip added was refused (400/422: Azure before API version
        2024-09-01-preview, some compatible servers): the caller's request, to send once more;
        that server is not asked again (its streams record ``usage: "missing"``)."""
        status = getattr(exc, "status_code", None)
        if not self.hide or status not in (400, 422):
            return None
        if "stream_options" not in f"{exc} {getattr(exc, 'body', '')}":
            return None
        base = _base(self.instance)
        if len(_REFUSING) < 256 and base not in _REFUSING:
            _REFUSING.add(base)
            logger.warning(
                "drip: %s refused stream_options={'include_usage': True}, which drip adds to "
                "chat streams to meter them; the request was sent again as written, and streams "
                "from it are no longer asked (they record usage: 'missing'). Upgrade the server "
                "(Azure: an API version from 2024-09-01-preview) to meter them.",
                base or "an OpenAI-compatible server",
            )
        self.kwargs, self.hide = self.caller_kwargs, False
        return self.kwargs

    def state(self) -> StreamState:
        if self.api == _CHAT:
            return _ChatStream(self.model, self.hide)
        return _ResponsesStream(self.model)

    def result(self, result: Any) -> Any:
        if not isinstance(result, _WRAPPED):  # the common case: one check
            model = getattr(result, "model", None) or self.model
            try:
                usage = _usage_of(self.api, result)
            except Exception:  # a surprise in the SDK's object: logged, never raised
                logger.exception("drip: reading an OpenAI usage failed; recorded without it")
                usage = None
            if usage is None and getattr(result, "status", None) in PENDING:  # background
                hold(result, self.llm, model)  # recorded when a retrieve sees it done
            else:
                self.llm.finish_tokens(model, usage)
            return result
        if isinstance(result, (openai.Stream, openai.AsyncStream)):
            state = self.state()
            state.where = getattr(result, "response", None)
            hidden = self.hide and getattr(result, "_decoder", None) is not None
            if hidden and isinstance(state, _ChatStream):
                result._decoder = _UsageTap(result._decoder, state)
            if isinstance(result, openai.Stream) and hasattr(result, "_decoder"):
                result._decoder = _Gate(result._decoder, state)  # see ``LLMCall.read_on``
            return watch(result, self.llm, state, is_async=isinstance(result, openai.AsyncStream))
        if isinstance(result, LegacyAPIResponse):
            return _RawResponse(result, self)
        if isinstance(result, APIResponse):
            return _StreamedResponse(result, self)
        # AsyncAPIResponse (the only type left in _WRAPPED)
        return _AsyncStreamedResponse(result, self)

    def failed(self, exc: BaseException) -> None:
        # ``.parse()``'s LengthFinishReasonError / ContentFilterFinishReasonError carry the
        # answer the provider billed: its usage is recorded with the error
        completion = getattr(exc, "completion", None)
        usage = None if completion is None else safely(_usage_of, self.api, completion)
        model = getattr(completion, "model", None) or self.model
        self.llm.finish_tokens(model if isinstance(model, str) else self.model, usage, error=exc)

    def from_body(self, body: bytes) -> None:
        """Record a plain answer from its JSON body (a raw response, already read)."""
        response = safely(_json, body)
        if response is not None:
            usage = safely(_usage_of, self.api, response)
            model = getattr(response, "model", None) or self.model
            if usage is None and getattr(response, "status", None) in PENDING:  # background
                hold(response, self.llm, model)
            else:
                self.llm.finish_tokens(model, usage)


class _RawResponse(wrapt.ObjectProxy):  # type: ignore[misc,type-arg,unused-ignore]  # generic or untyped, by version
    """``with_raw_response``: a plain answer's body is already read, and recorded from its JSON
    at once (not through ``.parse()``, which may raise, e.g. ``LengthFinishReasonError`` of
    ``chat.completions.parse``, and must raise where the caller calls it, not here); a stream
    is recorded from what ``.parse()`` gives."""

    def __init__(self, wrapped: Any, call: _Call) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_parsed: Any = None
        if not getattr(wrapped, "_stream", False):
            call.from_body(wrapped.http_response.content)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        if args or kwargs:
            return parsed
        if self._self_parsed is None:
            self._self_parsed = self._self_call.result(parsed)
        return self._self_parsed


class _Body:
    """What the caller of ``with_streaming_response`` read, and the one end of its call.

    A body the SDK parsed (``.parse()``) is recorded from the SDK's objects, exactly as a plain
    call or stream is. A body the caller read raw (``.read()``, ``.text()``, ``.json()``,
    ``.iter_bytes()``, ``.iter_text()``, ``.iter_lines()``) is recorded from the bytes the
    caller read: drip decodes them itself (the JSON object, or the SSE ``data:`` lines) and
    reads the usage there. What was never read is never read by drip: a response left unread
    or half-read records the usage known so far with ``complete: false`` (quantity 0 and no
    token fields when none was seen).
    """

    def __init__(self, response: Any, call: _Call) -> None:
        self.response = response
        self.call = call
        self.stream = bool(getattr(response, "_is_sse_stream", False))
        self.seen = bytearray()
        self.parsed_stream: Any = None  # the watched stream ``.parse()`` gave

    def take(self, chunk: bytes | str) -> None:
        self.seen += chunk.encode() if isinstance(chunk, str) else chunk

    def end(self, *, read_all: bool = False, error: BaseException | None = None) -> None:
        """Record now, from what was read (``read_all``: the body was read to its end)."""
        llm = self.call.llm
        if llm.finished:
            return
        if self.parsed_stream is not None:
            end_stream(self.parsed_stream, error)
            return
        body = bytes(self.seen)
        if read_all and not body:  # read whole by ``.read()`` and what calls it
            body = self.response.http_response.content
        state = self.call.state()
        state.where = getattr(self.response, "http_response", None)
        if self.stream:
            for line in body.decode("utf-8", "replace").splitlines():
                data = line[5:].strip() if line.startswith("data:") else ""
                if data and data != "[DONE]":
                    safely(self._feed, state, data)
            if state.last is not None and not state.done:
                safely(state.seen, state.last)
                if read_all and error is None:  # read to its end: the provider's end?
                    safely(state.ended)
            usage, complete = state.usage, state.done
        else:
            response = safely(_json, body) if read_all and body else None
            usage = None if response is None else safely(_usage_of, self.call.api, response)
            state.model = getattr(response, "model", None) or state.model
            complete = response is not None  # read whole: a body without usage says so
        if self.stream and self.call.llm.stream is None:
            self.call.llm.stream = state  # names the endpoint if usage is missing
        llm.finish_tokens(state.model, usage, error=error, streamed=self.stream, complete=complete)

    @staticmethod
    def _feed(state: StreamState, data: str) -> None:
        state.take(_obj(json.loads(data)))

    def parsed(self, parsed: Any, exact: bool) -> Any:
        """What ``.parse()`` gave: a stream is watched; an object records the call now."""
        if isinstance(parsed, (openai.Stream, openai.AsyncStream)):
            if self.parsed_stream is None:
                self.parsed_stream = self.call.result(parsed)
            return self.parsed_stream
        if exact:
            self.call.result(parsed)
        else:
            self.end(read_all=True)
        return parsed


class _ResponseProxy(wrapt.ObjectProxy):  # type: ignore[misc,type-arg,unused-ignore]  # generic or untyped, by version
    """What the sync and async ``with_streaming_response`` proxies share: the body watcher
    (ended on GC at the latest) and the three iterators, each fed through ``_self_iterate``
    (a plain generator in the sync proxy, an async one in the async proxy)."""

    def __init__(self, wrapped: Any, call: _Call) -> None:
        super().__init__(wrapped)
        self._self_body = body = _Body(wrapped, call)
        weakref.finalize(self, body.end)

    def iter_bytes(self, chunk_size: int | None = None) -> Any:
        return self._self_iterate(self.__wrapped__.iter_bytes(chunk_size), False)

    def iter_text(self, chunk_size: int | None = None) -> Any:
        return self._self_iterate(self.__wrapped__.iter_text(chunk_size), False)

    def iter_lines(self) -> Any:
        return self._self_iterate(self.__wrapped__.iter_lines(), True)

    def _self_iterate(self, chunks: Any, line: bool) -> Any:
        raise NotImplementedError


class _StreamedResponse(_ResponseProxy):
    """``with_streaming_response`` (sync): the call is recorded from what the caller read."""

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        return self._self_body.parsed(parsed, not (args or kwargs))

    def read(self) -> bytes:
        content: bytes = self.__wrapped__.read()
        self._self_body.end(read_all=True)
        return content

    def text(self) -> str:
        self.read()
        return str(self.__wrapped__.text())

    def json(self) -> object:
        self.read()
        return self.__wrapped__.json()

    def _self_iterate(self, chunks: Any, line: bool) -> Any:
        body = self._self_body
        try:
            for chunk in chunks:
                body.take(chunk + "\n" if line else chunk)
                yield chunk
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                body.end(error=exc)
            raise
        body.end(read_all=True)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_body.end()


class _AsyncStreamedResponse(_ResponseProxy):
    """``with_streaming_response`` (async): the same as ``_StreamedResponse``, awaited."""

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = await self.__wrapped__.parse(*args, **kwargs)
        return self._self_body.parsed(parsed, not (args or kwargs))

    async def read(self) -> bytes:
        content: bytes = await self.__wrapped__.read()
        self._self_body.end(read_all=True)
        return content

    async def text(self) -> str:
        await self.read()
        return str(await self.__wrapped__.text())

    async def json(self) -> object:
        await self.read()
        return await self.__wrapped__.json()

    async def _self_iterate(self, chunks: Any, line: bool) -> Any:
        body = self._self_body
        try:
            async for chunk in chunks:
                body.take(chunk + "\n" if line else chunk)
                yield chunk
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                body.end(error=exc)
            raise
        body.end(read_all=True)

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_body.end()


def _targets(client: Any) -> list[tuple[Any, str, str, bool]]:
    """(owner, method, api, is_async) for every method drip meters."""
    from openai.resources.chat.completions import AsyncCompletions, Completions

    owners: list[tuple[Any, str, bool]]
    if client is None:
        owners = [(Completions, _CHAT, False), (AsyncCompletions, _CHAT, True)]
        try:  # the Responses API came with openai 1.66: older SDKs meter chat completions
            from openai.resources.responses import AsyncResponses, Responses
        except ImportError:
            pass
        else:
            owners += [(Responses, _RESPONSES, False), (AsyncResponses, _RESPONSES, True)]
    else:
        is_async = isinstance(client, openai.AsyncOpenAI)
        owners = [(client.chat.completions, _CHAT, is_async)]
        responses = getattr(client, "responses", None)
        if responses is not None:
            owners.append((responses, _RESPONSES, is_async))
    return [(owner, method, api, is_async)
            for owner, api, is_async in owners for method in ("create", "parse")]  # fmt: skip


def _helper_close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        read_on(getattr(instance, "_raw_stream", None))  # before the response is closed
        return wrapped(*args, **kwargs)
    finally:
        end_stream(getattr(instance, "_raw_stream", None))


async def _async_helper_close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        await aread_on(getattr(instance, "_raw_stream", None))
        return await wrapped(*args, **kwargs)
    finally:
        end_stream(getattr(instance, "_raw_stream", None))


def _watch_helpers() -> None:
    """The ``.stream()`` helpers' streams close the HTTP response, not the SDK stream drip
    watches: leaving their ``with`` after a ``break`` ended the call only when the helper
    was freed (maybe after the run). Their ``close`` ends it now (a stream drip does not
    watch: nothing)."""
    try:
        from openai.lib.streaming.chat import AsyncChatCompletionStream, ChatCompletionStream
    except ImportError:  # an SDK without the helpers
        return
    helpers = [(ChatCompletionStream, False), (AsyncChatCompletionStream, True)]
    try:
        from openai.lib.streaming.responses import AsyncResponseStream, ResponseStream
    except ImportError:
        pass
    else:
        helpers += [(ResponseStream, False), (AsyncResponseStream, True)]
    for cls, is_async in helpers:
        _patches.wrap(cls, "close", _async_helper_close if is_async else _helper_close)


def instrument(client: Any = None, *, meter: str = "llm_tokens") -> None:
    """Meter one client's calls (and its ``with_options()`` / ``copy()`` clients'), or
    (``client=None``) every OpenAI client's; idempotent."""
    _instrument(client, meter, True)


def _instrument(client: Any, meter: str, undone: bool) -> None:
    if undone:
        _watch_helpers()
    for owner, method, api, is_async in _targets(client):
        begin = functools.partial(_Call, meter, api)
        _patches.wrap(owner, method, method_wrapper(begin, is_async), undone=undone)
        if api == _RESPONSES and method == "create":  # background responses end there
            for name in ("retrieve", "cancel"):
                _patches.wrap(owner, name, retrieve_wrapper(meter, is_async), undone=undone)
    if client is not None:
        _patches.follow_copies(client, lambda c: _instrument(c, meter, False), undone=undone)


def uninstrument() -> None:
    """Undo every ``instrument()``: the original methods are back."""
    _patches.undo()
