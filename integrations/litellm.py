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
tokens. A stream is different: LiteLLM asks the provider for usage only when the caller passes
``stream_options={"include_usage": True}``; without it LiteLLM counts the tokens itself with a
tokenizer, and that estimate (not the provider's count) is what LiteLLM reports and drip
records. Pass ``stream_options={"include_usage": True}`` to meter streams exactly.

A begun event LiteLLM never reports at all (neither hook, no stream) is kept until
``MAX_PENDING`` newer calls push it out, and is then recorded with ``complete: false`` and no
token counts.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

from ._llm import LLMCall, Usage, count, safely
from ._patches import Patches
from ._requires import requires

requires("litellm", extra="litellm")
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402  (after the check)
from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper  # noqa: E402

__all__ = ["DripLogger"]

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


def _provider(kwargs: dict[str, Any]) -> str:
    params = kwargs.get("litellm_params") or {}
    return str(params.get("custom_llm_provider") or kwargs.get("custom_llm_provider") or "litellm")


def _take_id(call_id: str) -> LLMCall | None:
    with _lock:
        return _pending.pop(call_id, None)


class _Watch:
    """What drip saw of one LiteLLM stream (kept apart from it, for its finalizer)."""

    __slots__ = ("call_id", "inside", "model", "reported", "usage")

    def __init__(self, call_id: str, model: Any) -> None:
        self.call_id = call_id
        self.model = model if isinstance(model, str) else None
        self.inside = False  # in LiteLLM's ``__next__``: a close there is LiteLLM's own
        self.reported = False  # LiteLLM will report it (the end was reached, or it failed)
        self.usage: Usage | None = None

    def feed(self, chunk: Any) -> None:
        usage = getattr(chunk, "usage", None)
        if usage is None:  # LiteLLM moves the provider's usage into the hidden params
            usage = (getattr(chunk, "_hidden_params", None) or {}).get("usage")
        if usage is not None:
            self.usage = _tokens(usage)
        self.model = getattr(chunk, "model", None) or self.model

    def abandoned(self) -> None:
        """The caller closed or dropped the stream: record it now if LiteLLM never will."""
        if self.reported or self.inside:
            return
        call = _take_id(self.call_id)
        if call is not None:
            call.finish_tokens(self.model, self.usage, streamed=True, complete=False)


def _watch(instance: Any) -> _Watch | None:
    return instance.__dict__.get("_drip_watch")  # type: ignore[no-any-return]


def _init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
    wrapped(*args, **kwargs)
    details = getattr(getattr(instance, "logging_obj", None), "model_call_details", None) or {}
    call_id = details.get("litellm_call_id")
    if call_id and call_id in _pending:
        watch = instance._drip_watch = _Watch(call_id, getattr(instance, "model", None))
        weakref.finalize(instance, watch.abandoned)


def _next(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    watch = _watch(instance)
    if watch is None:
        return wrapped(*args, **kwargs)
    watch.inside = True
    try:
        chunk = wrapped(*args, **kwargs)
    except Exception:  # StopIteration at the end, or a failure: LiteLLM reports both
        watch.reported = True
        raise
    finally:
        watch.inside = False
    watch.feed(chunk)
    if getattr(instance, "sent_stream_usage", False):  # sync: reported before this chunk
        watch.reported = True
    return chunk


async def _anext(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    watch = _watch(instance)
    if watch is None:
        return await wrapped(*args, **kwargs)
    watch.inside = True
    try:
        chunk = await wrapped(*args, **kwargs)
    except Exception:  # StopAsyncIteration at the end, or a failure: LiteLLM reports both
        watch.reported = True
        raise
    finally:
        watch.inside = False
    watch.feed(chunk)  # async reports only on the next step: never mark it here
    return chunk


def _close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        watch = _watch(instance)
        if watch is not None:
            watch.abandoned()


async def _aclose(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        watch = _watch(instance)
        if watch is not None:
            watch.abandoned()


_patches = Patches()


def _watch_streams() -> None:
    """Wrap LiteLLM's stream class once (idempotent: ``Patches`` skips what drip wrapped)."""
    for name, wrapper in (("__init__", _init), ("__next__", _next), ("__anext__", _anext),
                          ("close", _close), ("aclose", _aclose)):  # fmt: skip
        _patches.wrap(CustomStreamWrapper, name, wrapper)


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
        call.finish_tokens(model, safely(_usage, response_obj), streamed=bool(kwargs.get("stream")))

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
