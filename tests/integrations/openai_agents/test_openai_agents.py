"""DripTracingProcessor with the real Agents SDK and openai client; only the network is fake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import agents
import httpx2
import openai
import pytest
from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, RunConfig, Runner
from drip.integrations.openai_agents import DripTracingProcessor

import drip

USAGE = {
    "prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38,
    "prompt_tokens_details": {"cached_tokens": 10},
    "completion_tokens_details": {"reasoning_tokens": 3},
}  # fmt: skip


def answer(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    if request.url.path.endswith("/responses"):
        return httpx2.Response(200, json={
            "id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4.1",
            "status": "completed", "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "output": [{
                "type": "message", "id": "m1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "hi", "annotations": []}]}],
            "usage": {"input_tokens": 50, "output_tokens": 20, "total_tokens": 70,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        })  # fmt: skip
    assert body["model"] == "gpt-4o-mini"
    return httpx2.Response(200, json={
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello"}}],
        "usage": USAGE,
    })  # fmt: skip


@pytest.fixture(autouse=True)
def processor() -> Iterator[DripTracingProcessor]:
    mine = DripTracingProcessor()
    agents.set_trace_processors([mine])  # replaces the default exporter: nothing leaves
    yield mine
    agents.set_trace_processors([])


def client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    )


def chat_agent() -> Agent:
    return Agent(
        name="helper",
        model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client()),
    )


def llm_events(recorder: Any, run_id: str) -> list[Any]:
    return [e for e in recorder.events(run_id) if e.meter == "llm_tokens"]


async def test_each_model_call_records_once_in_the_callers_run(recorder: Any) -> None:
    async with drip.run("agent", customer_id=recorder.customer) as run:
        result = await Runner.run(chat_agent(), "hi")
    assert result.final_output == "hello"
    [event] = llm_events(recorder, run.id)
    meta = event.metadata
    assert (event.quantity, event.units, event.outcome) == (38, "tokens", "ok")
    assert (meta["model"], meta["input_tokens"], meta["output_tokens"]) == ("gpt-4o-mini", 30, 8)
    assert (meta["cached_input_tokens"], meta["reasoning_tokens"]) == (10, 3)
    assert meta["agents_span"] == "generation" and meta["streamed"] is False
    # gpt-4o-mini: 20 x 0.15 + 10 cached x 0.075 + 8 x 0.6, per million
    assert meta["cost_usd"] == pytest.approx(8.55e-06)


def test_run_sync_with_the_responses_model(recorder: Any) -> None:
    agent = Agent(name="r", model=OpenAIResponsesModel(model="gpt-4.1", openai_client=client()))

    def in_a_thread() -> str:
        with drip.run("agent", customer_id=recorder.customer) as run:
            assert Runner.run_sync(agent, "hi").final_output == "hi"
        # run_sync leaves the thread's event loop open by design: close it here
        asyncio.get_event_loop_policy().get_event_loop().close()
        return run.id

    with ThreadPoolExecutor(1) as pool:
        run_id = pool.submit(in_a_thread).result()
    [event] = llm_events(recorder, run_id)
    assert (event.quantity, event.metadata["agents_span"]) == (70, "response")  # fmt: skip


async def test_a_trace_outside_any_run_becomes_one(recorder: Any) -> None:
    config = RunConfig(workflow_name="support_agent",
                       trace_metadata={"drip_customer_id": recorder.customer})  # fmt: skip
    await Runner.run(chat_agent(), "hi", run_config=config)
    await Runner.run(chat_agent(), "again", run_config=config)
    recorder.client.flush(30)
    runs = recorder.client.list_runs(customer_id=recorder.customer).data
    assert len(runs) == 2
    for run in runs:
        assert recorder.run(run.id).workflow_name == "Support Agent"
        assert [e.quantity for e in llm_events(recorder, run.id)] == [38]


async def test_failed_model_call_is_an_error_event(recorder: Any) -> None:
    def fail(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(400, json={"error": {"message": "bad", "type": "x"}})

    bad = openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(fail))
    )
    agent = Agent(
        name="h", model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=bad)
    )
    with pytest.raises(openai.BadRequestError):
        async with drip.run("agent", customer_id=recorder.customer) as run:
            await Runner.run(agent, "hi")
    [event] = llm_events(recorder, run.id)
    assert (event.outcome, event.error_type, event.quantity) == ("error", "AgentsSpanError", 0)


async def test_two_processors_record_each_call_once(recorder: Any) -> None:
    agents.set_trace_processors([DripTracingProcessor(), DripTracingProcessor()])
    async with drip.run("agent", customer_id=recorder.customer) as run:
        await Runner.run(chat_agent(), "hi")
    assert [e.quantity for e in llm_events(recorder, run.id)] == [38]
    config = RunConfig(trace_metadata={"drip_customer_id": recorder.customer})
    await Runner.run(chat_agent(), "hi", run_config=config)  # a trace outside: one run
    recorder.client.flush(30)
    runs = recorder.client.list_runs(customer_id=recorder.customer).data
    assert len(runs) == 2
    assert [e.quantity for e in llm_events(recorder, runs[0].id)] == [38]


def sse(items: list[dict[str, Any]]) -> bytes:
    return ("".join(f"data: {json.dumps(i)}\n\n" for i in items) + "data: [DONE]\n\n").encode()


def streaming(request: httpx2.Request) -> httpx2.Response:
    """Streams when asked (``Runner.run_streamed``), answers whole otherwise."""
    body = json.loads(request.content)
    if not body.get("stream"):
        return answer(request)
    if request.url.path.endswith("/responses"):
        done = json.loads(answer(request).content)
        created = {**done, "status": "in_progress", "output": [], "usage": None}
        items = [{"type": "response.created", "sequence_number": 0, "response": created},
                 {"type": "response.completed", "sequence_number": 1, "response": done}]  # fmt: skip
    else:
        assert body["stream_options"] == {"include_usage": True}  # the SDK asks itself
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
        items = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hel"},
                                  "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": USAGE},
        ]  # fmt: skip
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse(items))


def streaming_client() -> openai.AsyncOpenAI:
    transport = httpx2.MockTransport(streaming)
    return openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport)
    )


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_run_streamed_model_calls_say_streamed(recorder: Any, api: str) -> None:
    if api == "chat":
        model: Any = OpenAIChatCompletionsModel(
            model="gpt-4o-mini", openai_client=streaming_client()
        )
    else:
        model = OpenAIResponsesModel(model="gpt-4.1", openai_client=streaming_client())
    agent = Agent(name="s", model=model)
    async with drip.run("agent", customer_id=recorder.customer) as run:
        result = Runner.run_streamed(agent, "hi")
        [e async for e in result.stream_events()]
        assert result.final_output == ("hello" if api == "chat" else "hi")
        await Runner.run(agent, "plain")  # after it, in the same context: not streamed
    events = llm_events(recorder, run.id)
    assert [e.metadata["streamed"] for e in events] == [True, False]
    assert [e.quantity for e in events] == ([38, 38] if api == "chat" else [70, 70])


class _OldResponseSpan:
    """A ``response`` span as openai-agents 0.2 makes it: the ``Response``, no ``usage``."""

    __slots__ = ("input", "response")
    type = "response"

    def __init__(self, response: Any) -> None:
        self.response, self.input = response, None


def test_a_response_span_without_usage_reads_the_responses_and_never_raises(
    recorder: Any, processor: DripTracingProcessor
) -> None:
    # openai-agents 0.2 (inside the extra's range) has no ResponseSpanData.usage: on_span_end
    # raised AttributeError there, and that SDK does not catch a processor's exception
    from types import SimpleNamespace

    from openai.types.responses import ResponseUsage

    usage = ResponseUsage.model_construct(input_tokens=50, output_tokens=20, total_tokens=70)
    old = _OldResponseSpan(SimpleNamespace(model="gpt-4.1", usage=usage))
    span = SimpleNamespace(trace_id="t_1", span_id="s_1", span_data=old, error=None)
    broken = SimpleNamespace(trace_id="t_1", span_id="s_2", span_data=old, error=42)
    with drip.run("agent", customer_id=recorder.customer) as run:
        processor.on_span_start(span)
        processor.on_span_end(span)
        processor.on_span_start(broken)
        processor.on_span_end(broken)  # a surprise in the span: logged, not raised
    [event, *_] = llm_events(recorder, run.id)
    assert (event.quantity, event.metadata["model"], event.metadata["input_tokens"]) == (
        70, "gpt-4.1", 50,
    )  # fmt: skip


def slow_stream_client(*, usage: bool, words: int) -> openai.AsyncOpenAI:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        item = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(item)}\n\n".encode()

    async def body() -> Any:
        for _ in range(words):
            yield chunk({"content": "x"})
            await asyncio.sleep(0.01)
        yield chunk({}, "stop")
        if usage:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': USAGE})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    transport = httpx2.MockTransport(handler)
    return openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport)
    )


@pytest.mark.parametrize("case", ["cancelled", "no-usage"])
async def test_a_cancelled_call_is_incomplete_and_a_call_without_usage_says_so(
    recorder: Any, case: str
) -> None:
    # both were quantity 0; a cancelled call then read as a provider without usage, and a
    # provider without usage as 0 input and 0 output tokens (the SDK's zeros)
    cancel = case == "cancelled"
    client = slow_stream_client(usage=cancel, words=40 if cancel else 2)
    agent = Agent(
        name="s", model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
    )
    async with drip.run("agent", customer_id=recorder.customer) as run:
        result = Runner.run_streamed(agent, "hi")
        seen = 0
        async for _ in result.stream_events():
            seen += 1
            if cancel and seen == 5:
                result.cancel()
    [event] = llm_events(recorder, run.id)
    assert event.quantity == 0 and "input_tokens" not in event.metadata
    if cancel:
        assert event.metadata["complete"] is False and "usage" not in event.metadata
    else:
        assert event.metadata["usage"] == "missing" and "complete" not in event.metadata
