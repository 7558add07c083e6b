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

Limitation: LiteLLM never reports a stream abandoned before its end. Its begun event is kept
until ``MAX_PENDING`` newer calls push it out, and is then recorded with ``complete: false`` and
no token counts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from ._llm import LLMCall, Usage, count, safely
from ._requires import requires

requires("litellm", extra="litellm")
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402  (after the check)

__all__ = ["DripLogger"]

#: calls begun and not yet reported; the oldest are let go of beyond this many
MAX_PENDING = 10_000
#: shared by every DripLogger, so two registered loggers still record each call once
_pending: OrderedDict[str, LLMCall] = OrderedDict()
_lock = threading.Lock()


def _usage(response: Any) -> Usage | None:
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=count(getattr(usage, "prompt_tokens", 0)),
        output_tokens=count(getattr(usage, "completion_tokens", 0)),
        cached_input_tokens=count(getattr(prompt, "cached_tokens", 0)),
        cache_creation_input_tokens=count(getattr(usage, "cache_creation_input_tokens", 0)),
        reasoning_tokens=count(getattr(completion, "reasoning_tokens", 0)),
    )


def _provider(kwargs: dict[str, Any]) -> str:
    params = kwargs.get("litellm_params") or {}
    return str(params.get("custom_llm_provider") or kwargs.get("custom_llm_provider") or "litellm")


class DripLogger(CustomLogger):  # type: ignore[misc]
    """A LiteLLM logger that meters each completion into drip (``litellm.callbacks``)."""

    def __init__(self, *, meter: str = "llm_tokens", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meter = meter

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
