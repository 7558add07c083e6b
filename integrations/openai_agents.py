"""Meter the OpenAI Agents SDK: a ``TracingProcessor`` that records each model call once.

::

    import agents
    from drip.integrations.openai_agents import DripTracingProcessor
    agents.add_trace_processor(DripTracingProcessor())

Each model call (a ``generation`` span from the Chat Completions model, a ``response`` span
from the Responses model) records one event with its tokens. The SDK's aggregate spans (a
turn's or a task's total) are never recorded, so nothing is counted twice.

A trace (``Runner.run``) outside any ``drip.run`` becomes a run (workflow = the trace's name)
for the customer in the trace metadata's ``drip_customer_id`` or the current
``drip.customer``; inside a ``drip.run`` the calls join it.

``streamed`` is true for the model calls of ``Runner.run_streamed``. The span data does not say
(a streamed model call fills the same ``generation`` / ``response`` span as a plain one), so
drip marks the run instead: the first ``DripTracingProcessor`` wraps ``AgentRunner.run_streamed``
(what ``Runner.run_streamed`` calls), which starts the run's loop as an asyncio task, so a
context variable set around it is seen by every span of that run, and ``AgentRunner.run``
(awaited, e.g. an agent used as a tool inside a streamed run) sets it back to false for its own
calls.

A model call the SDK ended without any usage (a streamed run cancelled mid-call,
``result.cancel()``) records ``complete: false``; one whose provider reported no usage (the SDK
then says 0 and 0) records quantity 0 with ``usage: "missing"`` (see
``drip.integrations._llm``).

The SDK sends processors nothing while tracing is disabled (``RunConfig(tracing_disabled=
True)``, ``OPENAI_AGENTS_DISABLE_TRACING=1``): then nothing is metered. Do not also instrument
the OpenAI client the agent uses (``drip.integrations.openai``), or each call counts twice.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import drip
from drip import context as drip_context

from ._llm import LLMCall, Usage, count, logger
from ._patches import Patches
from ._requires import requires

requires("agents", extra="openai-agents", integration="openai_agents")
from agents.run import AgentRunner  # noqa: E402  (after the check)
from agents.tracing import TracingProcessor  # noqa: E402

__all__ = ["DripTracingProcessor"]

CUSTOMER_KEY = "drip_customer_id"
#: model calls begun and not yet ended, by span id, shared by every processor, so two
#: registered processors still record each call once
_calls: dict[str, LLMCall] = {}
#: drip runs opened for traces (with the context they are open in), by trace id, shared too
_traces: dict[str, tuple[contextvars.Context, Any]] = {}
_lock = threading.Lock()
_MODEL_CALLS = frozenset({"generation", "response"})


#: True inside a ``Runner.run_streamed`` run (its loop task inherits it), False elsewhere
STREAMED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "drip_agents_streamed", default=False
)
_patches = Patches()


def _run_streamed(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    token = STREAMED.set(True)  # the run loop task created inside copies this context
    try:
        return wrapped(*args, **kwargs)
    finally:
        STREAMED.reset(token)


async def _run(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    token = STREAMED.set(False)  # a plain run, even inside a streamed one
    try:
        return await wrapped(*args, **kwargs)
    finally:
        STREAMED.reset(token)


class AgentsSpanError(Exception):
    """A model call the Agents SDK marked as failed (its span's ``error``)."""


def _usage(usage: dict[str, Any]) -> Usage:
    inputs = usage.get("input_tokens_details") or {}
    outputs = usage.get("output_tokens_details") or {}
    return Usage(
        input_tokens=count(usage.get("input_tokens")),
        output_tokens=count(usage.get("output_tokens")),
        cached_input_tokens=count(inputs.get("cached_tokens")),
        cache_creation_input_tokens=count(inputs.get("cache_write_tokens")),
        reasoning_tokens=count(outputs.get("reasoning_tokens")),
    )


def _usage_of(data: Any) -> dict[str, Any] | None:
    """A model span's usage: ``span_data.usage``, or, in SDKs whose response spans have no
    ``usage`` (openai-agents 0.2), the usage of the ``Response`` the span holds."""
    usage = getattr(data, "usage", None)
    if usage is None:
        usage = getattr(getattr(data, "response", None), "usage", None)
    if usage is not None and not isinstance(usage, dict):
        dump = getattr(usage, "model_dump", None)
        usage = dump() if callable(dump) else None
    return usage if isinstance(usage, dict) else None


def _model(data: Any) -> str | None:
    model = getattr(data, "model", None) or getattr(getattr(data, "response", None), "model", None)
    return model if isinstance(model, str) else None


class DripTracingProcessor(TracingProcessor):  # type: ignore[misc,unused-ignore]  # typed or not, by version
    """An Agents SDK tracing processor that meters every model call into drip."""

    def __init__(self, *, meter: str = "llm_tokens") -> None:
        self.meter = meter
        _patches.wrap(AgentRunner, "run_streamed", _run_streamed)  # once: idempotent
        _patches.wrap(AgentRunner, "run", _run)

    def on_trace_start(self, trace: Any) -> None:
        if drip_context.current_run() is not None or trace.trace_id in _traces:
            return
        metadata = getattr(trace, "metadata", None) or {}
        customer = metadata.get(CUSTOMER_KEY) or drip_context.current_customer_id()
        if not customer:
            return
        ctx = contextvars.copy_context()
        run = drip.run(str(getattr(trace, "name", None) or "agent"), customer_id=str(customer))
        with _lock:
            if trace.trace_id in _traces:
                return
            ctx.run(run.__enter__)
            _traces[trace.trace_id] = (ctx, run)

    def on_trace_end(self, trace: Any) -> None:
        with _lock:
            opened = _traces.pop(trace.trace_id, None)
        if opened is not None:
            ctx, run = opened
            ctx.run(run.__exit__, None, None, None)

    def on_span_start(self, span: Any) -> None:
        if getattr(span.span_data, "type", None) not in _MODEL_CALLS:
            return
        with _lock:
            opened = _traces.get(span.trace_id)
        with _lock:
            if span.span_id in _calls:
                return  # another DripTracingProcessor has it
            _calls[span.span_id] = call = LLMCall(
                self.meter, "openai", context=None if opened is None else opened[0]
            )
            call.streamed = STREAMED.get()  # this span's context: the run's loop task

    def on_span_end(self, span: Any) -> None:
        # older SDKs (0.2) do not catch a processor's exception: it would end the agent's run
        try:
            self._span_end(span)
        except Exception:
            logger.exception("drip: an Agents SDK model call could not be recorded")

    def _span_end(self, span: Any) -> None:
        with _lock:
            call = _calls.pop(span.span_id, None)
        if call is None:
            return
        data = span.span_data
        usage = _usage_of(data)
        error = None
        if span.error:
            error = AgentsSpanError(str(span.error.get("message") or span.error))
        tokens = None if usage is None else _usage(usage)
        if tokens is not None and not (tokens.input_tokens or tokens.output_tokens):
            tokens = None  # the SDK's zeros for a provider that sent none: usage "missing"
        call.finish_tokens(
            _model(data), tokens, error=error, streamed=call.streamed,
            complete=usage is not None or error is not None,  # no usage at all: cancelled
            extra={"agents_span": data.type},
        )  # fmt: skip

    def shutdown(self) -> None:
        """Nothing to release: records are delivered by drip's own worker."""

    def force_flush(self) -> None:
        """Flush drip's default client (the Agents SDK calls this before exiting)."""
        drip.flush()
