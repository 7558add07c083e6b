"""DripLogger with real LiteLLM; the provider is LiteLLM's own ``mock_response``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
litellm = pytest.importorskip("litellm")

from drip.integrations import litellm as litellm_integration  # noqa: E402
from drip.integrations.litellm import DripLogger  # noqa: E402

import drip  # noqa: E402

# LiteLLM's own pydantic models warn when first built; not ours to fix
pytestmark = pytest.mark.filterwarnings(r"ignore:Item.*ReadOnly. qualifier:UserWarning")
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def logger() -> Iterator[DripLogger]:
    saved = litellm.callbacks
    handler = DripLogger()
    litellm.callbacks = [handler]
    yield handler
    litellm.callbacks = saved


def llm_events(recorder: Any, run_id: str, expected: int) -> list[Any]:
    # LiteLLM reports sync calls from its own thread pool: wait for the report to land
    deadline = time.monotonic() + 10
    while True:
        report = recorder.client.flush(30)
        assert report.failed == 0, report
        timeline = recorder.client.get_run_timeline(run_id)
        events = [e for e in timeline.events if e.meter == "llm_tokens"]
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def check(event: Any, *, streamed: bool) -> None:
    meta = event.metadata
    assert event.outcome == "ok" and event.units == "tokens"
    assert event.quantity == meta["input_tokens"] + meta["output_tokens"] > 0
    assert (meta["provider"], meta["model"], meta["streamed"]) == (
        "openai",
        "gpt-4o-mini",
        streamed,
    )
    assert meta["cost_usd"] > 0 and "complete" not in meta


def test_completion(recorder: Any, logger: DripLogger) -> None:
    with drip.run("chat", customer_id=recorder.customer) as run:
        response = litellm.completion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="hello there"
        )
    [event] = llm_events(recorder, run.id, 1)
    check(event, streamed=False)
    assert (event.metadata["input_tokens"], event.metadata["output_tokens"]) == (
        response.usage.prompt_tokens, response.usage.completion_tokens,
    )  # fmt: skip
    assert not litellm_integration._pending


def test_streamed_completion_joins_the_callers_run(recorder: Any) -> None:
    with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = list(litellm.completion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="hello there", stream=True
        ))  # fmt: skip
    assert len(chunks) > 2
    [event] = llm_events(recorder, run.id, 1)
    check(event, streamed=True)


async def test_acompletion_plain_and_streamed(recorder: Any, logger: DripLogger) -> None:
    async with drip.run("chat", customer_id=recorder.customer) as run:
        await litellm.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
        stream = await litellm.acompletion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="hello you", stream=True
        )
        [c async for c in stream]
        for _ in range(200):  # LiteLLM reports an async stream from a task of this loop
            if not litellm_integration._pending:
                break
            await asyncio.sleep(0.025)
    events = llm_events(recorder, run.id, 2)
    assert sorted(e.metadata["streamed"] for e in events) == [False, True]
    for event in events:
        check(event, streamed=event.metadata["streamed"])


def test_failure_is_an_error_event(recorder: Any) -> None:
    with (
        pytest.raises(litellm.exceptions.InternalServerError),
        drip.run("chat", customer_id=recorder.customer) as run,
    ):
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=Exception("x"))
    [event] = llm_events(recorder, run.id, 1)
    assert (event.outcome, event.error_type, event.quantity) == ("error", "InternalServerError", 0)


def test_two_loggers_record_each_call_once(recorder: Any) -> None:
    litellm.callbacks = [DripLogger(), DripLogger()]
    with drip.run("chat", customer_id=recorder.customer) as run:
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello there")
    time.sleep(0.5)  # give a second, wrong record time to arrive
    [event] = llm_events(recorder, run.id, 1)
    check(event, streamed=False)


def stream_of(**kw: Any) -> Any:
    return litellm.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="one two three four", stream=True,
        **kw,
    )  # fmt: skip


def incomplete(recorder: Any, run_id: str) -> Any:
    time.sleep(0.5)  # give a second, wrong record (a late success hook) time to arrive
    [event] = llm_events(recorder, run_id, 1)
    meta = event.metadata
    assert (meta["complete"], meta["streamed"], meta["provider"]) == (False, True, "openai")
    assert event.outcome == "ok"
    assert not litellm_integration._pending
    return event


@pytest.mark.parametrize("how", ["close", "with-exit", "gc"])
def test_abandoned_stream_records_once_incomplete(recorder: Any, how: str) -> None:
    import gc

    with drip.run("chat", customer_id=recorder.customer) as run:
        if how == "with-exit":
            with stream_of() as stream:
                next(stream)
        else:
            stream = stream_of()
            for _ in stream:
                break
            if how == "close":
                stream.close()
                stream.close()
            del stream
            gc.collect()
    event = incomplete(recorder, run.id)
    assert event.quantity == 0 and "input_tokens" not in event.metadata


async def test_async_abandoned_stream_records_once_incomplete(recorder: Any) -> None:
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = await litellm.acompletion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="one two three", stream=True
        )
        async for _ in stream:
            break
        await stream.aclose()
    incomplete(recorder, run.id)


async def test_async_stream_abandoned_after_its_usage_keeps_the_tokens(recorder: Any) -> None:
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = await litellm.acompletion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="one two three", stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                break  # the usage chunk was seen; the end never was
        await stream.aclose()
    event = incomplete(recorder, run.id)
    assert event.quantity == event.metadata["input_tokens"] + event.metadata["output_tokens"] > 0


def test_stream_read_to_the_end_is_complete_and_recorded_once(recorder: Any) -> None:
    with drip.run("chat", customer_id=recorder.customer) as run:
        with stream_of() as stream:
            chunks = list(stream)
        stream.close()  # a close after the end is not an abandonment
    assert len(chunks) > 2
    time.sleep(0.5)
    [event] = llm_events(recorder, run.id, 1)
    check(event, streamed=True)


@pytest.fixture
def no_usage_server() -> Iterator[str]:
    """A local OpenAI-compatible server whose answers carry no usage: its base URL."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = json.dumps({
                "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hi"}}],
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_provider_without_usage_is_usage_missing_not_zero_tokens(
    recorder: Any, no_usage_server: str
) -> None:
    # LiteLLM fills in a Usage of zeros when the provider sent none: drip recorded it as
    # 0 input and 0 output tokens, indistinguishable from a real count
    with drip.run("chat", customer_id=recorder.customer) as run:
        litellm.completion(
            model="openai/gpt-4o-mini", messages=MESSAGES, api_base=no_usage_server, api_key="k"
        )
    [event] = llm_events(recorder, run.id, 1)
    assert (event.quantity, event.outcome, event.metadata["usage"]) == (0, "ok", "missing")
    assert "input_tokens" not in event.metadata and "cost_usd" not in event.metadata
