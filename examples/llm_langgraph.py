"""Meter a LangGraph agent: one drip run per graph invocation, tool and model events nested.

The chat model is a fake that reports usage as real providers do; no network.

Run: DRIP_BASE_URL=local python examples/llm_langgraph.py
"""

from __future__ import annotations

from typing import Any, TypedDict

from drip.integrations.langchain import DripCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph

import drip
from drip import drip as client


class FakeChat(BaseChatModel):
    """Answers with fixed text and the usage a provider would report."""

    @property
    def _llm_type(self) -> str:
        return "fake"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        usage: Any = {"input_tokens": 220, "output_tokens": 35, "total_tokens": 255}
        message = AIMessage(content="The tide is high at noon.", usage_metadata=usage,
                            response_metadata={"model_name": "gpt-4.1-mini"})  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=message)])


@tool
def tide_table(port: str) -> str:
    """Look up the tide table of a port."""
    return f"{port}: high 12:04, low 18:15"


class State(TypedDict):
    port: str
    table: str
    answer: str


def build() -> Any:
    model = FakeChat()
    graph = StateGraph(State)
    graph.add_node("lookup", lambda s: {"table": tide_table.invoke(s["port"])})
    graph.add_node("answer", lambda s: {"answer": str(model.invoke(s["table"]).content)})
    graph.add_edge(START, "lookup")
    graph.add_edge("lookup", "answer")
    graph.add_edge("answer", END)
    return graph.compile(name="tide_agent")


def main() -> None:
    customer = client.create_customer(external_customer_id="example-langgraph")
    handler = DripCallbackHandler()
    out = build().invoke({"port": "Brest"}, config={
        "callbacks": [handler], "metadata": {"drip_customer_id": customer.id}})  # fmt: skip
    print("answer:", out["answer"])
    drip.flush(timeout=10)
    run = client.list_runs(customer_id=customer.id).data[0]  # newest first
    timeline = client.get_run_timeline(run.id)
    print(f"run {timeline.workflow_name!r} {timeline.status.value}")
    for event in timeline.events:
        print(f"  {event.meter}: {event.quantity:g} {event.units or ''}".rstrip())


if __name__ == "__main__":
    main()
