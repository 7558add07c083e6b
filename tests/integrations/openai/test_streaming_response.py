"""``with_streaming_response`` with the real openai SDK; only the network is faked (httpx2).

Every way of reading the body records exactly one event with the exact token fields; a body
left unread (or half read) records once with ``complete: false``.
"""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from drip.integrations import openai as drip_openai

import drip

from .test_openai import check_chat, only_llm

MESSAGES = [{"role": "user", "content": "hi"}]
READS = ["parse", "read", "text", "json", "iter_bytes", "iter_text", "iter_lines"]
#: (how the body is read, streamed); an SSE body is not JSON, so no ``.json()`` on a stream
CASES = [(how, False) for how in READS] + [(how, True) for how in READS if how != "json"]
IDS = [f"{how}-{'stream' if stream else 'plain'}" for how, stream in CASES]


def chat(client: Any, **kw: Any) -> Any:
    return client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, **kw
    )


def read_sync(response: Any, how: str) -> Any:
    if how == "parse":
        parsed = response.parse()
        return list(parsed) if response._is_sse_stream else parsed
    if how.startswith("iter_"):
        return list(getattr(response, how)())
    return getattr(response, how)()


async def read_async(response: Any, how: str) -> Any:
    if how == "parse":
        parsed = await response.parse()
        return [c async for c in parsed] if response._is_sse_stream else parsed
    if how.startswith("iter_"):
        return [c async for c in getattr(response, how)()]
    return await getattr(response, how)()


@pytest.mark.parametrize(("how", "stream"), CASES, ids=IDS)
def test_each_way_of_reading_records_once_exactly(
    recorder: Any, make_client: Any, how: str, stream: bool
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        with chat(client, **({"stream": True} if stream else {})) as response:
            got = read_sync(response, how)
        if how == "parse" and stream:
            assert len(got) == 4 and all(c.choices for c in got)  # the usage chunk is hidden
        if how == "json" and not stream:
            assert got["usage"]["total_tokens"] == 150
    check_chat(only_llm(recorder.events(run.id)), streamed=stream)


@pytest.mark.parametrize(("how", "stream"), CASES, ids=IDS)
async def test_async_each_way_of_reading_records_once_exactly(
    recorder: Any, make_client: Any, how: str, stream: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=True)
    async with (
        drip.run("chat", customer_id=recorder.customer) as run,
        chat(client, **({"stream": True} if stream else {})) as response,
    ):
        await read_async(response, how)
    check_chat(only_llm(recorder.events(run.id)), streamed=stream)


def test_raw_sse_lines_show_the_usage_chunk_drip_asked_for(
    recorder: Any, make_client: Any, fake: Any
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer), chat(client, stream=True) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    # raw bytes are the wire's: the usage chunk drip asked for is there (documented)
    assert fake.bodies[0]["stream_options"] == {"include_usage": True}
    assert json.loads(lines[-1][6:])["choices"] == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("how", ["unread", "gc", "half-parsed"])
def test_left_unread_or_half_read_records_once_incomplete(
    recorder: Any, make_client: Any, how: str, stream: bool
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        if how == "gc":
            manager = chat(client, **({"stream": True} if stream else {}))
            response = manager.__enter__()
            del manager, response
            gc.collect()
        else:
            with chat(client, **({"stream": True} if stream else {})) as response:
                if how == "half-parsed" and stream:
                    next(iter(response.parse()))
                elif how == "half-parsed":
                    next(response.iter_bytes(chunk_size=10))
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["streamed"] is stream
    assert event.quantity == 0 and "input_tokens" not in event.metadata


def test_a_stream_abandoned_after_its_usage_keeps_the_tokens(
    recorder: Any, make_client: Any
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run, chat(client, stream=True) as r:
        for line in r.iter_lines():
            if '"usage"' in line:
                break  # the usage was seen; [DONE] never was
    event = only_llm(recorder.events(run.id))
    assert event.quantity == 150 and event.metadata["input_tokens"] == 120


def test_responses_api_with_streaming_response(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("resp", customer_id=recorder.customer) as run:
        with client.responses.with_streaming_response.create(model="gpt-4.1", input="hi") as r:
            assert r.parse().usage.total_tokens == 70
        with client.responses.with_streaming_response.create(
            model="gpt-4.1", input="hi", stream=True
        ) as r:
            list(r.iter_lines())
    llm = [e for e in recorder.events(run.id) if e.meter == "llm_tokens"]
    assert [e.metadata["streamed"] for e in llm] == [False, True]
    assert [e.quantity for e in llm] == [70, 70]
    assert all(e.metadata["reasoning_tokens"] == 5 and "complete" not in e.metadata for e in llm)


def test_an_error_status_propagates_and_records_error(
    recorder: Any, make_client: Any, fake: Any
) -> None:
    import openai

    drip_openai.instrument()
    fake.status = 400
    client = make_client()
    with (
        pytest.raises(openai.BadRequestError),
        drip.run("chat", customer_id=recorder.customer) as run,
        chat(client),
    ):
        pass
    event = only_llm(recorder.events(run.id))
    assert (event.outcome, event.error_type) == ("error", "BadRequestError")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_async_left_unread_records_once_incomplete(
    recorder: Any, make_client: Any, stream: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=True)
    async with (
        drip.run("chat", customer_id=recorder.customer) as run,
        chat(client, **({"stream": True} if stream else {})),
    ):
        pass
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["streamed"] is stream
    assert event.quantity == 0
