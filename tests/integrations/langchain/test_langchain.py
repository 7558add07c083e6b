"""DripCallbackHandler with real langchain-core and LangGraph; the models are fakes."""

from __future__ import annotations

import logging
import sys
from typing import Any, TypedDict

import pytest
from drip.integrations.langchain import DripCallbackHandler
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph

import drip
from drip import RunStatus

MODEL = "gpt-4o-mini-2024-07-18"
TOKENS = {
    "model": MODEL, "input_tokens": 40, "output_tokens": 12, "cached_input_tokens": 30,
    "cache_creation_input_tokens": 0, "reasoning_tokens": 2,
}  # fmt: skip
COST = 1.095e-05  # gpt-4o-mini: 10 x 0.15 + 30 cached x 0.075 + 12 x 0.6, per million


def llm_events(events: list[Any]) -> list[Any]:
    return [e for e in events if e.meter == "llm_tokens"]


def check(event: Any, *, streamed: bool) -> None:
    assert (event.quantity, event.units, event.outcome) == (52, "tokens", "ok")
    meta = event.metadata or {}
    assert {k: meta.get(k) for k in TOKENS} == TOKENS
    assert meta["streamed"] is streamed and isinstance(meta["provider"], str)
    assert meta["cost_usd"] == pytest.approx(COST)


def config(**metadata: Any) -> Any:
    return {"callbacks": [DripCallbackHandler()], "metadata": metadata}


def test_is_a_real_callback_handler() -> None:
    assert isinstance(DripCallbackHandler(), BaseCallbackHandler)


def test_invoke_and_ainvoke_record_usage_metadata(recorder: Any, model: Any) -> None:
    with drip.run("chat", customer_id=recorder.customer) as run:
        assert model.invoke("hi", config=config()).content == "hello world"
    [event] = llm_events(recorder.events(run.id))
    check(event, streamed=False)


async def test_ainvoke(recorder: Any, model: Any) -> None:
    async with drip.run("chat", customer_id=recorder.customer) as run:
        await model.ainvoke("hi", config=config())
    [event] = llm_events(recorder.events(run.id))
    check(event, streamed=False)


def test_stream(recorder: Any, model: Any) -> None:
    with drip.run("chat", customer_id=recorder.customer) as run:
        text = "".join(str(c.content) for c in model.stream("hi", config=config()))
    assert text == "hello world"
    [event] = llm_events(recorder.events(run.id))
    check(event, streamed=True)


async def test_astream(recorder: Any, model: Any) -> None:
    async with drip.run("chat", customer_id=recorder.customer) as run:
        [c async for c in model.astream("hi", config=config())]
    [event] = llm_events(recorder.events(run.id))
    check(event, streamed=True)


def test_abandoned_stream_records_once_incomplete(recorder: Any, model: Any) -> None:
    with drip.run("chat", customer_id=recorder.customer) as run:
        stream = model.stream("hi", config=config())
        next(stream)
        stream.close()
    [event] = llm_events(recorder.events(run.id))
    assert (event.outcome, event.metadata["complete"], event.quantity) == ("ok", False, 0)


def test_model_error_propagates_and_the_event_is_error(recorder: Any, model: Any) -> None:
    model.fail = True
    with (
        pytest.raises(ConnectionError, match="provider down"),
        drip.run("chat", customer_id=recorder.customer) as run,
    ):
        model.invoke("hi", config=config())
    [event] = llm_events(recorder.events(run.id))
    assert (event.outcome, event.error_type, event.quantity) == ("error", "ConnectionError", 0)


def test_top_level_chain_becomes_a_run_for_the_metadata_customer(recorder: Any, model: Any) -> None:
    chain = RunnableLambda(lambda q: model.invoke(q).content).with_config(run_name="answer")
    assert chain.invoke("hi", config=config(drip_customer_id=recorder.customer)) == "hello world"
    recorder.client.flush(30)
    [run] = recorder.client.list_runs(customer_id=recorder.customer).data
    details = recorder.run(run.id)
    assert (details.workflow_name, details.status) == (
        "Answer",
        RunStatus.COMPLETED,
    )  # the server titles the slug
    [event] = llm_events(recorder.events(run.id))
    check(event, streamed=False)


def test_a_failing_chain_ends_its_run_failed(recorder: Any) -> None:
    def boom(_: Any) -> None:
        raise KeyError("nope")

    chain = RunnableLambda(boom).with_config(run_name="broken")
    with pytest.raises(KeyError):
        chain.invoke("hi", config=config(drip_customer_id=recorder.customer))
    recorder.client.flush(30)
    [run] = recorder.client.list_runs(customer_id=recorder.customer).data
    details = recorder.run(run.id)
    assert (details.status, details.error_code) == (RunStatus.FAILED, "KeyError")


class State(TypedDict):
    question: str
    facts: str
    answer: str


def graph(model: Any) -> Any:
    @tool
    def lookup(question: str) -> str:
        """Look the question up."""
        return f"facts about {question}"

    @tool
    def summarise(text: str) -> str:
        """Summarise with the model (a tool that calls a model)."""
        return str(model.invoke(f"summarise {text}").content)

    def research(state: State) -> dict[str, str]:
        facts = lookup.invoke(state["question"])
        return {"facts": summarise.invoke(facts)}

    def answer(state: State) -> dict[str, str]:
        return {"answer": str(model.invoke(state["facts"]).content)}

    builder = StateGraph(State)
    builder.add_node("research", research)
    builder.add_node("answer", answer)
    builder.add_edge(START, "research")
    builder.add_edge("research", "answer")
    builder.add_edge("answer", END)
    return builder.compile(name="qa_graph")


#: LangChain carries a run's config (its callbacks) into calls made inside a node or tool only
#: through contextvars, which asyncio hands to its tasks from Python 3.11: before, nested calls
#: in async code report to no handler unless the config is passed on (LangChain's own rule)
_ASYNC_NESTING = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="LangChain nests async calls implicitly from Python 3.11"
)


@pytest.mark.parametrize("mode", ["invoke", pytest.param("ainvoke", marks=_ASYNC_NESTING)])
async def test_langgraph_graph_is_one_run_with_events_nested_as_the_graph_did(
    recorder: Any, model: Any, mode: str
) -> None:
    app = graph(model)
    cfg = config(drip_customer_id=recorder.customer)
    if mode == "invoke":
        out = app.invoke({"question": "tides"}, config=cfg)
    else:
        out = await app.ainvoke({"question": "tides"}, config=cfg)
    assert out["answer"] == "hello world"
    recorder.client.flush(30)
    [run] = recorder.client.list_runs(customer_id=recorder.customer).data
    assert recorder.run(run.id).workflow_name == "Qa Graph"  # from the slug qa_graph
    events = recorder.events(run.id)
    by_id = {e.id: e for e in events}
    tools = {e.metadata["tool"]: e for e in events if e.meter == "tool_calls"}
    assert sorted(tools) == ["lookup", "summarise"]
    assert all(t.quantity == 1 and t.parent_event_id is None for t in tools.values())
    llm = llm_events(events)
    assert len(llm) == 2
    for event in llm:
        check(event, streamed=False)
    # the model called inside the summarise tool is its child; the answer node's is top level
    parents = sorted((by_id[e.parent_event_id].metadata["tool"] if e.parent_event_id else "")
                     for e in llm)  # fmt: skip
    assert parents == ["", "summarise"]


def test_inside_a_drip_run_the_graph_joins_it(recorder: Any, model: Any) -> None:
    with drip.run("outer", customer_id=recorder.customer) as run:
        graph(model).invoke({"question": "x"}, config=config())
    recorder.client.flush(30)
    assert [r.id for r in recorder.client.list_runs(customer_id=recorder.customer).data] == [run.id]
    assert len(llm_events(recorder.events(run.id))) == 2


def test_two_handlers_record_each_call_once(recorder: Any, model: Any) -> None:
    handlers = [DripCallbackHandler(), DripCallbackHandler()]
    with drip.run("chat", customer_id=recorder.customer) as run:
        model.invoke("hi", config={"callbacks": handlers})
    [event] = llm_events(recorder.events(run.id))
    check(event, streamed=False)


async def test_a_model_or_tool_invoked_on_its_own_bills_the_metadata_customer(
    recorder: Any, model: Any
) -> None:
    # no chain around it, no drip.run: the customer in the config's metadata is the one
    # billed (it was ignored: "called outside any run and without a customer", not recorded)
    @tool
    def lookup(q: str) -> str:
        """Look up."""
        return q

    cfg = config(drip_customer_id=recorder.customer)
    model.invoke("hi", config=cfg)
    [c async for c in model.astream("hi", config=cfg)]
    lookup.invoke("q", config=cfg)
    recorder.client.flush(30)
    summary = recorder.client.get_usage_summary(customer_id=recorder.customer)
    assert (summary.total("llm_tokens"), summary.total("tool_calls")) == (104, 1)
    assert not recorder.client.list_runs(customer_id=recorder.customer).data


def test_a_model_without_usage_says_usage_missing_and_what_to_do(
    recorder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from drip.integrations import _llm
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    _llm._missing_warned.clear()
    caplog.set_level(logging.WARNING, logger="drip")  # a Celery worker test leaves root at ERROR
    model = GenericFakeChatModel(messages=iter([AIMessage(content="hi")] * 2))
    with drip.run("chat", customer_id=recorder.customer) as run:
        model.invoke("hi", config=config())
        "".join(str(c.content) for c in model.stream("hi", config=config()))
    events = llm_events(recorder.events(run.id))
    assert [(e.quantity, e.metadata["usage"]) for e in events] == [(0, "missing")] * 2
    assert all("complete" not in e.metadata for e in events)
    assert "stream_usage=True" in caplog.text
