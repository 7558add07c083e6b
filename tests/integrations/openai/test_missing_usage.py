"""A stream read to its end without usage is not an abandoned stream (real openai SDK, only
the network faked): ``complete: true`` with ``usage: "missing"``, reported once per model and
endpoint; a stream the caller leaves early stays ``complete: false``."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from drip.integrations import _openai_background
from drip.integrations import openai as drip_openai

import drip

from .conftest import (
    MODEL,
    chat_chunks,
    chat_completion,
    response_events,
    response_obj,
    sse,
    sse_response,
)


def only_llm(events: list[Any]) -> Any:
    llm = [e for e in events if e.meter == "llm_tokens"]
    assert len(llm) == 1, events
    return llm[0]


def no_usage_proxy(request: Any) -> Any:
    """An OpenAI-compatible server that ignores ``stream_options`` and never reports usage."""
    import json

    import httpx2

    body = json.loads(request.content)
    chat = request.url.path.endswith("/chat/completions")
    if body.get("stream"):
        if chat:
            return sse_response(sse(chat_chunks(include_usage=False)))
        events = response_events()
        events[-1]["response"]["usage"] = None
        return sse_response(sse(events))
    answer = chat_completion() if chat else response_obj()
    answer["usage"] = None
    return httpx2.Response(200, json=answer)


def ask(client: Any, **kw: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True, **kw
    )


def check_missing(event: Any, *, streamed: bool = True, model: str = MODEL) -> None:
    meta = event.metadata
    assert (event.quantity, event.outcome) == (0, "ok")
    assert meta["usage"] == "missing" and meta.get("complete", True) is True
    assert meta["streamed"] is streamed and meta["model"] == model
    assert "input_tokens" not in meta and "cost_usd" not in meta  # absent, never invented


@pytest.mark.parametrize("asked", [False, True], ids=["drip-asked", "caller-asked"])
@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_chat_stream_read_to_its_end_without_usage_is_complete_and_says_so(
    recorder: Any, make_client: Any, async_: bool, asked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_, handler=no_usage_proxy)
    options = {"stream_options": {"include_usage": True}} if asked else {}
    caplog.set_level(logging.WARNING, logger="drip")
    runs = []
    for _ in range(2):
        async with drip.run("chat", customer_id=recorder.customer) as run:
            if async_:
                chunks = [c async for c in await ask(client, **options)]
            else:
                chunks = list(ask(client, **options))
        assert len(chunks) == 4 and chunks[-1].choices[0].finish_reason == "stop"
        runs.append(run.id)
    for run_id in runs:
        check_missing(only_llm(recorder.events(run_id)))
    warned = [r for r in caplog.records if "no token usage" in r.getMessage()]
    assert len(warned) == 1, caplog.text  # once per model and endpoint, not per call
    message = warned[0].getMessage()
    assert "include_usage" in message and "/chat/completions" in message and MODEL in message


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_chat_stream_left_early_without_usage_stays_incomplete(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_, handler=no_usage_proxy)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        if async_:
            async with await ask(client) as stream:
                await stream.__anext__()
        else:
            with ask(client) as stream:
                next(stream)
    meta = only_llm(recorder.events(run.id)).metadata
    assert meta["complete"] is False and "usage" not in meta


def test_the_stream_helper_without_usage(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client(handler=no_usage_proxy)
    with (
        drip.run("chat", customer_id=recorder.customer) as run,
        client.chat.completions.stream(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "w0 w1 w2 "
    check_missing(only_llm(recorder.events(run.id)))


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_responses_stream_completed_without_usage(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_, handler=no_usage_proxy)
    async with drip.run("resp", customer_id=recorder.customer) as run:
        if async_:
            stream = await client.responses.create(model="gpt-4.1", input="hi", stream=True)
            events = [e async for e in stream]
        else:
            events = list(client.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    check_missing(only_llm(recorder.events(run.id)), model="gpt-4.1")


def test_a_responses_stream_cut_before_its_end_stays_incomplete(
    recorder: Any, make_client: Any
) -> None:
    def cut(request: Any) -> Any:
        return sse_response(sse(response_events()[:1], done=False))  # no response.completed

    drip_openai.instrument()
    client = make_client(handler=cut)
    with drip.run("resp", customer_id=recorder.customer) as run:
        events = list(client.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert [e.type for e in events] == ["response.created"]
    meta = only_llm(recorder.events(run.id)).metadata
    assert meta["complete"] is False and "usage" not in meta


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_plain_answer_without_usage_says_so(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_, handler=no_usage_proxy)
    messages = [{"role": "user", "content": "hi"}]
    async with drip.run("chat", customer_id=recorder.customer) as run:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        answer = (await answer) if async_ else answer
    assert answer.usage is None
    check_missing(only_llm(recorder.events(run.id)), streamed=False)


def test_a_chat_stream_cut_mid_message_stays_incomplete(recorder: Any, make_client: Any) -> None:
    def cut(request: Any) -> Any:  # the body ends cleanly, but before any finish_reason
        return sse_response(sse(chat_chunks(include_usage=False)[:2], done=False))

    drip_openai.instrument()
    client = make_client(handler=cut)
    with drip.run("chat", customer_id=recorder.customer) as run:
        assert len(list(ask(client))) == 2
    meta = only_llm(recorder.events(run.id)).metadata
    assert meta["complete"] is False and "usage" not in meta


@pytest.mark.parametrize(
    ("how", "stream"),
    [("parse", False), ("read", False), ("parse", True), ("iter_lines", True)],
    ids=["parse-plain", "read-plain", "parse-stream", "iter_lines-stream"],
)
def test_with_streaming_response_read_whole_without_usage(
    recorder: Any, make_client: Any, how: str, stream: bool
) -> None:
    from .test_streaming_response import chat, read_sync

    drip_openai.instrument()
    client = make_client(handler=no_usage_proxy)
    with (
        drip.run("chat", customer_id=recorder.customer) as run,
        chat(client, **({"stream": True} if stream else {})) as response,
    ):
        read_sync(response, how)
    check_missing(only_llm(recorder.events(run.id)), streamed=stream)


def test_a_failed_response_without_usage_is_not_blamed_on_configuration(
    recorder: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def failed(request: Any) -> Any:
        events = response_events()
        events[-1].update(type="response.failed")
        events[-1]["response"].update(status="failed", usage=None)
        return sse_response(sse(events))

    drip_openai.instrument()
    client = make_client(handler=failed)
    with drip.run("resp", customer_id=recorder.customer) as run:
        events = list(client.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert events[-1].type == "response.failed"
    check_missing(only_llm(recorder.events(run.id)), model="gpt-4.1")
    assert "response failed" in caplog.text and "include_usage" not in caplog.text


def test_a_background_response_is_pending_not_usage_missing(
    recorder: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx2

    def queued(request: Any) -> Any:
        return httpx2.Response(200, json={**response_obj("queued"), "usage": None})

    drip_openai.instrument()
    client = make_client(handler=queued)
    with drip.run("resp", customer_id=recorder.customer) as run:
        answer = client.responses.create(model="gpt-4.1", input="hi", background=True)
    assert answer.status == "queued"
    _openai_background._end_waiting_at_exit()  # never polled to its end (test_background.py)
    meta = only_llm(recorder.events(run.id)).metadata
    assert (meta["complete"], meta["status"]) == (False, "queued") and "usage" not in meta
    assert "no token usage" not in caplog.text  # not a configuration problem
