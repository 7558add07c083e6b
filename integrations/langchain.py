"""Meter LangChain and LangGraph: a callback handler that records tokens and tool calls.

::

    from drip.integrations.langchain import DripCallbackHandler
    handler = DripCallbackHandler()
    graph.invoke(inputs, config={"callbacks": [handler],
                                 "metadata": {"drip_customer_id": customer_id}})

- Each LLM or chat-model call records one ``meter`` event (default ``llm_tokens``) with the
  tokens of its ``usage_metadata`` (see ``drip.integrations._llm`` for the fields).
  A model that reports no usage at all (a ChatOpenAI stream without ``stream_usage=True``
  against a non-OpenAI base URL) records quantity 0 with ``usage: "missing"`` and a warning,
  once per model, saying so.
- Each tool call records one ``tool_meter`` event (default ``tool_calls``, quantity 1).
- A top-level chain or graph invocation outside any ``drip.run`` becomes a run (workflow = the
  chain's or graph's name) for the customer in ``config["metadata"]["drip_customer_id"]`` or the
  current ``drip.customer``; it ends COMPLETED or FAILED with the chain. Inside a ``drip.run``
  the events join that run. A model or tool invoked on its own (no chain around it) outside
  any run records a usage record of the metadata's customer (or the current one).
- Events nest as LangChain nests the calls: a model called inside a tool is a child of the
  tool's event. Chains in between (graph nodes, sequences) are not events themselves.

One handler may serve many concurrent invocations, sync or async, LangGraph's thread pools
included: all state is keyed by LangChain's ``run_id`` under a lock, and drip's own context is
carried explicitly (a LangChain callback does not run inside the call it reports on). Do not
also instrument the provider SDK underneath (``drip.integrations.openai``) for the same calls,
or each call is recorded twice.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import drip
from drip import context as drip_context

from ._llm import LLMCall, Usage, count
from ._requires import requires

requires("langchain_core", extra="langchain", integration="langchain")
from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402  (after the check)

__all__ = ["DripCallbackHandler"]

CUSTOMER_KEY = "drip_customer_id"
#: what to do when a model reports no ``usage_metadata`` (see ``drip.integrations._llm``)
MISSING_HINT = (
    "the model's result carried no usage_metadata: a ChatOpenAI stream reports usage only with "
    "stream_usage=True, which LangChain turns on by itself only for OpenAI's own base URL (not "
    "for Azure, OpenRouter or a proxy); pass stream_usage=True to the model, or make its "
    "provider report usage"
)


@dataclass
class _Node:
    """What the handler knows of one LangChain run (a chain, an LLM call or a tool call)."""

    #: the context that calls nested under this one begin in (None: the caller's)
    context: contextvars.Context | None
    run: Any = None  # the drip.run(...) this top-level chain opened
    call: LLMCall | None = None
    model: str | None = None
    streamed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _usage(usage: dict[str, Any]) -> Usage:
    inputs = usage.get("input_token_details") or {}
    outputs = usage.get("output_token_details") or {}
    return Usage(
        input_tokens=count(usage.get("input_tokens")),
        output_tokens=count(usage.get("output_tokens")),
        cached_input_tokens=count(inputs.get("cache_read")),
        cache_creation_input_tokens=count(inputs.get("cache_creation")),
        reasoning_tokens=count(outputs.get("reasoning")),
    )


def _from_result(response: Any) -> tuple[Usage | None, str | None]:
    """Usage and model of an ``LLMResult``: ``usage_metadata`` first, ``llm_output`` second."""
    model = None
    for generations in response.generations or []:
        for generation in generations:
            message = getattr(generation, "message", None)
            meta = getattr(message, "response_metadata", None) or {}
            model = model or meta.get("model_name") or meta.get("model")
            usage = getattr(message, "usage_metadata", None)
            if usage:
                return _usage(dict(usage)), model
    output = response.llm_output or {}
    model = model or output.get("model_name") or output.get("model")
    legacy = output.get("token_usage") or output.get("usage")
    if isinstance(legacy, dict):
        return Usage(
            input_tokens=count(legacy.get("prompt_tokens", legacy.get("input_tokens"))),
            output_tokens=count(legacy.get("completion_tokens", legacy.get("output_tokens"))),
        ), model
    return None, model


#: what every handler knows, by LangChain run id (a run id is unique across invocations)
_NODES: dict[UUID, _Node] = {}
_LOCK = threading.Lock()


class DripCallbackHandler(BaseCallbackHandler):  # type: ignore[misc,unused-ignore]  # typed or not, by version
    """A LangChain callback handler that meters LLM and tool calls into drip."""

    raise_error = False
    #: our methods only queue records (no I/O): run them inline, not in an executor thread
    run_inline = True

    def __init__(self, *, meter: str = "llm_tokens", tool_meter: str = "tool_calls") -> None:
        super().__init__()
        self.meter = meter
        self.tool_meter = tool_meter
        # shared by every handler: two DripCallbackHandlers on one invocation record once
        self._nodes = _NODES
        self._lock = _LOCK

    # -- the tree of LangChain runs ---------------------------------------------------------

    def _parent_context(self, parent_run_id: UUID | None) -> contextvars.Context | None:
        with self._lock:
            node = self._nodes.get(parent_run_id) if parent_run_id is not None else None
        return None if node is None else node.context

    def _call_context(
        self, parent_run_id: UUID | None, metadata: dict[str, Any] | None
    ) -> contextvars.Context | None:
        """Where an LLM or tool call begins: under its parent, or, called on its own outside
        any run, for the customer its metadata names (a usage record of that customer)."""
        if parent_run_id is not None:
            return self._parent_context(parent_run_id)
        customer = (metadata or {}).get(CUSTOMER_KEY)
        if not customer or drip_context.current_run() is not None:
            return None
        ctx = contextvars.copy_context()
        ctx.run(drip.customer(str(customer)).__enter__)  # this copy only: never left
        return ctx

    def _add(self, run_id: UUID, node: _Node) -> None:
        with self._lock:
            self._nodes[run_id] = node

    def _claim(self, run_id: UUID) -> bool:
        """Take ``run_id`` for this handler; False if another drip handler already has it."""
        with self._lock:
            if run_id in self._nodes:
                return False
            self._nodes[run_id] = _Node(None)
            return True

    def _pop(self, run_id: UUID) -> _Node | None:
        with self._lock:
            return self._nodes.pop(run_id, None)

    # -- chains and graphs ------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._claim(run_id):
            return
        if parent_run_id is not None or drip_context.current_run() is not None:
            self._add(run_id, _Node(self._parent_context(parent_run_id)))
            return
        customer = (metadata or {}).get(CUSTOMER_KEY) or drip_context.current_customer_id()
        if not customer:
            self._add(run_id, _Node(None))  # events follow @metered's rule for no customer
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "langchain"
        ctx = contextvars.copy_context()
        run = drip.run(str(name), customer_id=str(customer))
        ctx.run(run.__enter__)
        self._add(run_id, _Node(ctx, run=run))

    def _end_chain(self, run_id: UUID, error: BaseException | None) -> None:
        node = self._pop(run_id)
        if node is not None and node.run is not None and node.context is not None:
            exc_type = None if error is None else type(error)
            node.context.run(node.run.__exit__, exc_type, error, None)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, error)

    # -- LLM and chat-model calls -----------------------------------------------------------

    def _start_llm(
        self, run_id: UUID, parent_run_id: UUID | None, metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:  # fmt: skip
        if not self._claim(run_id):
            return
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        provider = str(metadata.get("ls_provider") or "langchain")
        call = LLMCall(
            self.meter, provider, context=self._call_context(parent_run_id, metadata),
            capture_context=True,
        )  # fmt: skip
        call.missing_hint = MISSING_HINT
        model = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
        self._add(run_id, _Node(call.context, call=call, model=model))

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_llm(run_id, parent_run_id, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_llm(run_id, parent_run_id, metadata, kwargs)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            node = self._nodes.get(run_id)
        if node is not None:
            node.streamed = True

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        node = self._pop(run_id)
        if node is None or node.call is None:
            return
        usage, model = _from_result(response)
        node.call.finish_tokens(model or node.model, usage, streamed=node.streamed)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        node = self._pop(run_id)
        if node is None or node.call is None:
            return
        usage, model = None, None
        if kwargs.get("response") is not None:  # what a stream produced before it ended
            usage, model = _from_result(kwargs["response"])
        if isinstance(error, GeneratorExit):  # the caller stopped reading: abandoned, not failed
            node.call.finish_tokens(model or node.model, usage, streamed=True, complete=False)
        else:
            node.call.finish_tokens(model or node.model, usage, error=error, streamed=node.streamed)

    # -- tools ------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._claim(run_id):
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        call = LLMCall(
            self.tool_meter, "langchain", units=None,
            context=self._call_context(parent_run_id, metadata), capture_context=True,
        )  # fmt: skip
        self._add(run_id, _Node(call.context, call=call, extra={"tool": str(name)}))

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        node = self._pop(run_id)
        if node is not None and node.call is not None:
            node.call.finish(1, node.extra)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        node = self._pop(run_id)
        if node is not None and node.call is not None:
            node.call.finish(1, node.extra, error)
