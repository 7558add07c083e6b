"""Meter LiteLLM calls: a ``CustomLogger`` that records one event per completion.

::

    import litellm
    from drip.integrations.litellm import DripLogger
    litellm.callbacks = [DripLogger()]

Sync and async, plain and streamed (LiteLLM reports a stream once, assembled, when it has been
read to the end). The event begins in ``log_pre_api_call``, which LiteLLM calls on the caller's
thread in the caller's context, and is finished by the success or failure callback, whichever
path (sync or async) LiteLLM fires; a call reported twice (known LiteLLM bugs) records once.
Sync streams finish on a LiteLLM thread that does not carry the caller's context, which is why
the event is begun before the call rather than when LiteLLM reports it.

A stream the caller abandons (breaks out and closes it, leaves ``with``, or drops it to the
garbage collector) is never reported by LiteLLM: its success hook fires only when a stream is
read to its end. drip watches the stream object LiteLLM returns (``CustomStreamWrapper``, whose
``__init__``, ``__next__`` / ``__anext__`` and ``close`` / ``aclose`` it wraps once, the first
time a ``DripLogger`` is made): each chunk's usage is kept, and a stream closed by the caller or
collected before its end records one event with the usage seen so far (LiteLLM passes on the
provider's usage chunk; without one: quantity 0, no token fields) and ``complete: false``.
LiteLLM closes the stream itself when it reaches the end, from inside ``__next__``: that close
is not an abandonment (the success hook follows). The success hook and the abandonment take the
same pending call, so at most one of them records it.

A call whose provider reported no usage (LiteLLM then hands over a usage of zeros) records
quantity 0 with ``usage: "missing"`` and a warning once per model, not 0 input and 0 output
tokens. A stream is different: LiteLLM asks the provider for usage only with
``stream_options={"include_usage": True}``; without it LiteLLM counts the tokens itself with a
tokenizer and reports that estimate. So, as the OpenAI integration does, drip asks for the
provider's usage on every streamed ``completion`` / ``acompletion`` the caller did not ask for
(``_setup``, around LiteLLM's ``function_setup``, while a ``DripLogger`` is registered;
LiteLLM never refuses ``stream_options`` for a provider, and sends it only to those that take
it), and keeps the extra final chunk (empty ``choices``, the usage) out of the caller's loop.
A stream the caller closes right after its ``finish_reason`` chunk (billed in full; only the
usage chunk is left) is read on to its end first, bounded (``_read_on``). A stream whose provider still reported no usage (a proxy that ignores the option) records
LiteLLM's estimate marked ``usage: "estimated"``, with a warning once per model.

A begun event LiteLLM never reports at all (neither hook, no stream) is kept until
``MAX_PENDING`` newer calls push it out, and is then recorded with ``complete: false`` and no
token counts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

from ._llm import LLMCall, Usage, count, safely
from ._patches import Patches
from ._requires import requires

litellm = requires("litellm", extra="litellm")
import litellm.utils as litellm_utils  # noqa: E402  (after the check)
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper  # noqa: E402

__all__ = ["DripLogger"]

logger = logging.getLogger("drip")

#: calls begun and not yet reported; the oldest are let go of beyond this many
MAX_PENDING = 10_000
#: shared by every DripLogger, so two registered loggers still record each call once
_pending: OrderedDict[str, LLMCall] = OrderedDict()
_lock = threading.Lock()


def _usage(response: Any) -> Usage | None:
    return _tokens(getattr(response, "usage", None))


def _tokens(usage: Any) -> Usage | None:
    """Token counts, or None when unknown: LiteLLM fills in a usage of zeros when the
    provider sent none, and no call has 0 input and 0 output tokens (``usage: "missing"``)."""
    if usage is None:
        return None
    inputs = count(getattr(usage, "prompt_tokens", 0))
    outputs = count(getattr(usage, "completion_tokens", 0))
    if not inputs and not outputs:
        return None
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=inputs,
        output_tokens=outputs,
        cached_input_tokens=count(getattr(prompt, "cached_tokens", 0)),
        cache_creation_input_tokens=count(getattr(usage, "cache_creation_input_tokens", 0)),
        reasoning_tokens=count(getattr(completion, "reasoning_tokens", 0)),
    )


_warned: set[Any] = set()


def _estimated(model: Any) -> None:
    if model in _warned or len(_warned) >= 256:
        return
    _warned.add(model)
    logger.warning(
        "drip: a LiteLLM stream for model %r ended without a provider's usage (a "
        "mock_response, or a proxy or provider that ignores stream_options={'include_usage': "
        "True}): recorded LiteLLM's own token estimate, marked usage='estimated'. Said once "
        "per model.",
        model,
    )


def _provider(kwargs: dict[str, Any]) -> str:
    params = kwargs.get("litellm_params") or {}
    return str(params.get("custom_llm_provider") or kwargs.get("custom_llm_provider") or "litellm")


def _take_id(call_id: str) -> LLMCall | None:
    with _lock:
        return _pending.pop(call_id, None)


#: the live streams of pending calls, by call id (their chunks tell an estimated usage)
_streams: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
#: ids of the streamed calls drip asked for usage (``_setup``): their usage chunk is hidden
_asked: OrderedDict[str, None] = OrderedDict()


class _Watch:
    """What drip saw of one LiteLLM stream (kept apart from it, for its finalizer)."""

    __slots__ = ("call_id", "finished", "hide", "inside", "model", "reported", "usage")

    def __init__(self, call_id: str, model: Any) -> None:
        self.call_id = call_id
        self.model = model if isinstance(model, str) else None
        self.inside = False  # in LiteLLM's ``__next__``: a close there is LiteLLM's own
        self.reported = False  # LiteLLM will report it (the end was reached, or it failed)
        self.usage: Usage | None = None
        self.finished = False  # the last chunk closed a choice (``finish_reason``)
        with _lock:  # drip asked for the usage chunk: the caller must not see it
            self.hide = _asked.pop(call_id, False) is None

    def feed(self, chunk: Any, stream: Any) -> bool:
        """Read a chunk; False if it is the usage chunk drip asked for (hidden)."""
        usage = getattr(chunk, "usage", None)
        if usage is None:  # LiteLLM moves the provider's usage into the hidden params
            usage = (getattr(chunk, "_hidden_params", None) or {}).get("usage")
        self.model = getattr(chunk, "model", None) or self.model
        choices = getattr(chunk, "choices", None)
        if choices:
            self.finished = any(getattr(c, "finish_reason", None) for c in choices)
        if usage is None:
            return True
        self.usage = _tokens(usage)
        if choices:
            return True
        # LiteLLM's final usage chunk: async LiteLLM reports the call after it (the stream may
        # be gone by then), so whether it is an estimate is told to the call now
        call = _pending.get(self.call_id)
        if call is not None:
            call.estimated = _estimated_usage(stream)  # type: ignore[attr-defined]
        return not self.hide

    def abandoned(self) -> None:
        """The caller closed or dropped the stream: record it now if LiteLLM never will."""
        if self.reported or self.inside:
            return
        call = _take_id(self.call_id)
        if call is not None:
            call.finish_tokens(self.model, self.usage, streamed=True, complete=False)


def _estimated_usage(stream: Any) -> bool:
    """LiteLLM's final usage chunk is the provider's usage if a chunk it read from the provider
    carried one, else its own tokenizer's estimate."""
    return not any(getattr(c, "usage", None) is not None for c in getattr(stream, "chunks", ()))


def _watch(instance: Any) -> _Watch | None:
    return instance.__dict__.get("_drip_watch")  # type: ignore[no-any-return]


def _init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
    wrapped(*args, **kwargs)
    details = getattr(getattr(instance, "logging_obj", None), "model_call_details", None) or {}
    call_id = details.get("litellm_call_id")
    if call_id and (call_id in _pending or call_id in _asked):  # asked: hide its usage chunk
        watch = instance._drip_watch = _Watch(call_id, getattr(instance, "model", None))
        weakref.finalize(instance, watch.abandoned)
        _streams[call_id] = instance


def _next(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    watch = _watch(instance)
    if watch is None:
        return wrapped(*args, **kwargs)
    while True:
        watch.inside = True
        try:
            chunk = wrapped(*args, **kwargs)
        except Exception:  # StopIteration at the end, or a failure: LiteLLM reports both
            watch.reported = True
            raise
        finally:
            watch.inside = False
        shown = watch.feed(chunk, instance)
        if getattr(instance, "sent_stream_usage", False):  # sync: reported before this chunk
            watch.reported = True
        if shown:
            return chunk


async def _anext(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    watch = _watch(instance)
    if watch is None:
        return await wrapped(*args, **kwargs)
    while True:
        watch.inside = True
        try:
            chunk = await wrapped(*args, **kwargs)
        except Exception:  # StopAsyncIteration at the end, or a failure: LiteLLM reports both
            watch.reported = True
            raise
        finally:
            watch.inside = False
        if watch.feed(chunk, instance):  # async reports only on the next step: never mark it here
            return chunk


#: how long a stream closed at its ``finish_reason`` is read on for its usage chunk
READ_ON_SECONDS = 0.5


def _reads_on(instance: Any) -> tuple[_Watch, LLMCall] | None:
    """The watch and call of a stream the caller closes right after its ``finish_reason``
    chunk (the provider billed it; the usage chunk follows), taken from LiteLLM's hooks."""
    watch = _watch(instance)
    if watch is None or watch.reported or watch.inside or not watch.finished:
        return None
    if watch.usage is not None:  # already seen (the caller asked for it): nothing to read
        return None
    call = _take_id(watch.call_id)
    return None if call is None else (watch, call)


def _read_on_end(instance: Any, watch: _Watch, call: LLMCall, ran_out: bool) -> None:
    usage = watch.usage
    complete = ran_out and usage is not None
    extra = {"usage": "estimated"} if complete and _estimated_usage(instance) else None
    call.finish_tokens(watch.model, usage, streamed=True, complete=complete, extra=extra)


def _read_on(instance: Any) -> None:
    """Read a stream closed at its ``finish_reason`` on to its end (the usage chunk), each
    network read bounded by ``READ_ON_SECONDS`` in all (only where drip reaches the socket
    stream: an OpenAI-compatible provider); not there in time: ``complete: false``."""
    response = getattr(getattr(instance, "completion_stream", None), "response", None)
    extensions = getattr(response, "extensions", None)
    network = extensions.get("network_stream") if isinstance(extensions, dict) else None
    if network is None or not callable(getattr(network, "read", None)):
        return
    taken = _reads_on(instance)
    if taken is None:
        return
    watch, call = taken
    deadline = time.monotonic() + READ_ON_SECONDS
    read = network.read

    def bounded(max_bytes: int, timeout: float | None = None) -> Any:
        left = max(0.001, deadline - time.monotonic())
        return read(max_bytes, left if timeout is None else min(timeout, left))

    ran_out = False
    network.read = bounded
    try:
        while time.monotonic() < deadline:
            next(instance)
    except StopIteration:
        ran_out = True
    except Exception:  # timed out or failed: what was read stays
        pass
    finally:
        with contextlib.suppress(AttributeError):
            del network.read
    _read_on_end(instance, watch, call, ran_out)


async def _aread_on(instance: Any) -> None:
    """``_read_on`` for an async stream: each chunk awaited at most until the deadline."""
    taken = _reads_on(instance)
    if taken is None:
        return
    watch, call = taken
    import anyio

    deadline = time.monotonic() + READ_ON_SECONDS
    ran_out = False
    try:
        while True:
            with anyio.move_on_after(deadline - time.monotonic()) as scope:
                await instance.__anext__()
            if scope.cancelled_caught:
                break
    except StopAsyncIteration:
        ran_out = True
    except Exception:
        pass
    _read_on_end(instance, watch, call, ran_out)


def _close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        _read_on(instance)  # left at its finish_reason: its usage is next
        return wrapped(*args, **kwargs)
    finally:
        watch = _watch(instance)
        if watch is not None:
            watch.abandoned()


async def _aclose(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        await _aread_on(instance)
        return await wrapped(*args, **kwargs)
    finally:
        watch = _watch(instance)
        if watch is not None:
            watch.abandoned()


def _registered() -> bool:
    """A DripLogger is among LiteLLM's callbacks (only then does drip change requests)."""
    lists = ("callbacks", "success_callback", "_async_success_callback", "input_callback")
    return any(
        isinstance(callback, DripLogger)
        for name in lists
        for callback in (getattr(litellm, name, None) or ())
    )


def _setup(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """LiteLLM's ``function_setup``, which every ``completion`` / ``acompletion`` goes through
    and whose kwargs are the call's: a stream the caller did not ask usage of is asked."""
    call_type = args[0] if args else kwargs.get("original_function")
    options = kwargs.get("stream_options")
    call_id = kwargs.get("litellm_call_id")
    if (
        call_type in ("completion", "acompletion")
        and kwargs.get("stream") is True
        and isinstance(call_id, str)
        and not (isinstance(options, dict) and options.get("include_usage") is True)
        and _registered()
    ):
        kwargs = {**kwargs, "stream_options": {**(options or {}), "include_usage": True}}
        with _lock:
            _asked[call_id] = None
            while len(_asked) > MAX_PENDING:
                _asked.popitem(last=False)
    return wrapped(*args, **kwargs)


_patches = Patches()


def _watch_streams() -> None:
    """Wrap LiteLLM's stream class and ``function_setup`` once (idempotent: ``Patches`` skips
    what drip wrapped)."""
    for name, wrapper in (("__init__", _init), ("__next__", _next), ("__anext__", _anext),
                          ("close", _close), ("aclose", _aclose)):  # fmt: skip
        _patches.wrap(CustomStreamWrapper, name, wrapper)
    _patches.wrap(litellm_utils, "function_setup", _setup)


class DripLogger(CustomLogger):  # type: ignore[misc,unused-ignore]  # typed or not, by version
    """A LiteLLM logger that meters each completion into drip (``litellm.callbacks``)."""

    def __init__(self, *, meter: str = "llm_tokens", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meter = meter
        _watch_streams()

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        call_id = kwargs.get("litellm_call_id")
        if not call_id or call_id in _pending:
            return  # both hooks may fire for one call, and two loggers may be registered
        call = LLMCall(self.meter, _provider(kwargs))
        with _lock:
            if call_id in _pending:
                return
            _pending[call_id] = call
            while len(_pending) > MAX_PENDING:
                _pending.popitem(last=False)  # let go: recorded as incomplete

    async def async_log_pre_api_call(
        self, model: Any, messages: Any, kwargs: dict[str, Any]
    ) -> None:
        self.log_pre_api_call(model, messages, kwargs)

    def _take(self, kwargs: dict[str, Any]) -> LLMCall | None:
        with _lock:
            return _pending.pop(kwargs.get("litellm_call_id") or "", None)

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        call = self._take(kwargs)
        if call is None:
            return  # not begun here (no pre-call hook), or already recorded
        model = getattr(response_obj, "model", None) or kwargs.get("model")
        streamed = bool(kwargs.get("stream"))
        usage = safely(_usage, response_obj)
        stream = _streams.pop(kwargs.get("litellm_call_id") or "", None) if streamed else None
        estimated = getattr(call, "estimated", None)  # from the usage chunk (``_Watch.feed``)
        if estimated is None:  # sync LiteLLM reports before handing that chunk over
            estimated = stream is not None and _estimated_usage(stream)
        estimated = estimated and usage is not None
        if estimated:  # the provider reported none: LiteLLM's tokenizer count
            _estimated(kwargs.get("model"))
        extra = {"usage": "estimated"} if estimated else None
        call.finish_tokens(model, usage, streamed=streamed, extra=extra)

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        call = self._take(kwargs)
        if call is None:
            return
        error = kwargs.get("exception")
        if not isinstance(error, BaseException):
            error = RuntimeError(str(error or "LiteLLM reported a failure"))
        call.finish_tokens(
            kwargs.get("model"), None, error=error, streamed=bool(kwargs.get("stream"))
        )

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.log_failure_event(kwargs, response_obj, start_time, end_time)
