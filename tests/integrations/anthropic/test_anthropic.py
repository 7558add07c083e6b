"""drip.integrations.anthropic with the real anthropic SDK; only the network is faked."""

from __future__ import annotations

import gc
from typing import Any

import anthropic
import pytest
from anthropic.resources.messages import AsyncMessages, Messages
from drip.integrations import anthropic as drip_anthropic

import drip

MODEL = "claude-sonnet-4-5-20250929"
TOKENS = {
    "provider": "anthropic", "model": MODEL, "input_tokens": 1210, "output_tokens": 15,
    "cached_input_tokens": 1000, "cache_creation_input_tokens": 200, "reasoning_tokens": 0,
}  # fmt: skip
# claude-sonnet-4-5: 10 x 3 + 1000 reads x 0.3 + 200 writes x 3.75 + 15 x 15, per million
COST = 1.305e-03
ARGS: dict[str, Any] = {
    "model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
}  # fmt: skip


def only_llm(events: list[Any]) -> Any:
    llm = [e for e in events if e.meter == "llm_tokens"]
    assert len(llm) == 1, events
    return llm[0]


def check(event: Any, *, streamed: bool) -> None:
    assert (event.quantity, event.units, event.outcome) == (1225, "tokens", "ok")
    meta = event.metadata or {}
    assert {k: meta.get(k) for k in TOKENS} == TOKENS
    assert meta["streamed"] is streamed and "complete" not in meta
    assert meta["cost_usd"] == pytest.approx(COST)


def test_create(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    with drip.run("chat", customer_id=recorder.customer) as run:
        message = make_client().messages.create(**ARGS)
    assert message.content[0].text == "hello"
    check(only_llm(recorder.events(run.id)), streamed=False)


async def test_async_create(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    async with drip.run("chat", customer_id=recorder.customer) as run:
        await make_client(async_=True).messages.create(**ARGS)
    check(only_llm(recorder.events(run.id)), streamed=False)


def test_stream_counts_cumulative_usage_once(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    with drip.run("chat", customer_id=recorder.customer) as run:
        kinds = [e.type for e in make_client().messages.create(**ARGS, stream=True)]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    check(only_llm(recorder.events(run.id)), streamed=True)


async def test_async_stream(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = await make_client(async_=True).messages.create(**ARGS, stream=True)
        assert len([e async for e in stream]) == 7
    check(only_llm(recorder.events(run.id)), streamed=True)


def test_messages_stream_helper(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    client = make_client()
    with (
        drip.run("chat", customer_id=recorder.customer) as run,
        client.messages.stream(**ARGS) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "hello" and final.usage.output_tokens == 15
    check(only_llm(recorder.events(run.id)), streamed=True)


async def test_async_messages_stream_helper(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    client = make_client(async_=True)
    async with (
        drip.run("chat", customer_id=recorder.customer) as run,
        client.messages.stream(**ARGS) as stream,
    ):
        final = await stream.get_final_message()
    assert final.content[0].text == "hello"
    check(only_llm(recorder.events(run.id)), streamed=True)


@pytest.mark.parametrize("how", ["break-and-gc", "helper-exit"])
def test_abandoned_stream_records_what_was_reported(
    recorder: Any, make_client: Any, how: str
) -> None:
    drip_anthropic.instrument()
    with drip.run("chat", customer_id=recorder.customer) as run:
        if how == "helper-exit":
            with make_client().messages.stream(**ARGS) as stream:
                next(iter(stream))
        else:
            stream = make_client().messages.create(**ARGS, stream=True)
            for _ in stream:
                break
            del stream
            gc.collect()
    event = only_llm(recorder.events(run.id))
    # message_start said: 1210 input (cache included), 1 output so far
    assert event.quantity == 1211 and event.metadata["complete"] is False
    assert (event.metadata["input_tokens"], event.metadata["output_tokens"]) == (1210, 1)


def test_instrumenting_twice_records_once(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    drip_anthropic.instrument()
    client = make_client()
    drip_anthropic.instrument(client)
    with drip.run("chat", customer_id=recorder.customer) as run:
        client.messages.create(**ARGS)
    assert only_llm(recorder.events(run.id)).quantity == 1225


def test_uninstrument_restores_the_original_methods() -> None:
    names = ("create", "stream", "parse")
    originals = {(cls, n): vars(cls)[n] for cls in (Messages, AsyncMessages) for n in names}
    drip_anthropic.instrument()
    assert vars(Messages)["create"] is not originals[(Messages, "create")]
    drip_anthropic.uninstrument()
    assert {key: vars(key[0])[key[1]] for key in originals} == originals


@pytest.mark.parametrize("api", ["create", "stream"])
def test_provider_error_propagates_unchanged_and_the_event_is_error(
    recorder: Any, make_client: Any, fake: Any, api: str
) -> None:
    drip_anthropic.instrument()
    fake.status = 400
    client = make_client()
    with (
        pytest.raises(anthropic.BadRequestError, match="boom"),
        drip.run("chat", customer_id=recorder.customer) as run,
    ):
        if api == "create":
            client.messages.create(**ARGS)
        else:
            with client.messages.stream(**ARGS):
                pass
    event = only_llm(recorder.events(run.id))
    assert (event.outcome, event.error_type, event.quantity) == ("error", "BadRequestError", 0)


@pytest.mark.parametrize("how", ["break-and-gc", "close", "never-read"])
async def test_async_abandoned_stream_records_once(
    recorder: Any, make_client: Any, how: str
) -> None:
    drip_anthropic.instrument()
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = await make_client(async_=True).messages.create(**ARGS, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        if how != "never-read":
            async for _ in stream:
                break
        if how == "close":
            await stream.close()
        del stream
        gc.collect()  # recorded now, not when the loop closes the async generators
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["streamed"] is True
    # message_start said: 1210 input (cache included), 1 output so far
    assert event.quantity == (0 if how == "never-read" else 1211)


def test_a_client_instrumented_alone_stays_metered_through_with_options(
    recorder: Any, make_client: Any
) -> None:
    # with_options() / copy() give a new client with new resources: they were not metered
    client = make_client()
    drip_anthropic.instrument(client)
    with drip.run("chat", customer_id=recorder.customer) as run:
        client.with_options(timeout=5).messages.create(**ARGS)
        with client.copy(max_retries=0).messages.stream(**ARGS) as stream:
            stream.get_final_message()
    assert [e.quantity for e in recorder.events(run.id)] == [1225, 1225]


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_stream_to_message_stop_without_usage_says_usage_missing(
    recorder: Any, make_client: Any, fake: Any, async_: bool
) -> None:
    from drip.integrations import _llm

    _llm._missing_warned.clear()
    fake.without_usage = True  # a proxy that drops every usage object
    drip_anthropic.instrument()
    async with drip.run("chat", customer_id=recorder.customer) as run:
        if async_:
            stream = await make_client(async_=True).messages.create(**ARGS, stream=True)
            kinds = [e.type async for e in stream]
        else:
            kinds = [e.type for e in make_client().messages.create(**ARGS, stream=True)]
    assert kinds[-1] == "message_stop"
    event = only_llm(recorder.events(run.id))
    assert (event.quantity, event.metadata["usage"]) == (0, "missing")
    assert "complete" not in event.metadata and "input_tokens" not in event.metadata


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_with_raw_response_records_the_tokens(
    recorder: Any, make_client: Any, async_: bool, stream: bool
) -> None:
    # it went through create() but returned the SDK's APIResponse: recorded 0 tokens before
    drip_anthropic.instrument()
    client = make_client(async_=async_)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        raw = client.messages.with_raw_response.create(**ARGS, stream=stream)
        raw = (await raw) if async_ else raw
        assert raw.http_response.status_code == 200
        parsed = (await raw.parse()) if async_ else raw.parse()
        if stream:
            kinds = [e.type async for e in parsed] if async_ else [e.type for e in parsed]
            assert kinds[-1] == "message_stop"
        else:
            assert parsed.content[0].text == "hello"
    check(only_llm(recorder.events(run.id)), streamed=stream)


def test_with_raw_response_recorded_even_if_never_parsed(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    with drip.run("chat", customer_id=recorder.customer) as run:
        raw = make_client().messages.with_raw_response.create(**ARGS)
        assert raw.json()["usage"]["output_tokens"] == 15
        del raw
        gc.collect()
    check(only_llm(recorder.events(run.id)), streamed=False)


@pytest.mark.parametrize("how", ["parse", "read", "unread"])
def test_with_streaming_response(recorder: Any, how: str) -> None:
    import json

    import httpx2

    from .conftest import message

    def body_on_the_wire(request: Any) -> Any:  # not in memory until read, as over a network
        content = iter([json.dumps(message()).encode()])
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=content)

    transport = httpx2.MockTransport(body_on_the_wire)
    client = anthropic.Anthropic(api_key="sk-test", http_client=httpx2.Client(transport=transport))
    drip_anthropic.instrument()
    with (
        drip.run("chat", customer_id=recorder.customer) as run,
        client.messages.with_streaming_response.create(**ARGS) as response,
    ):
        if how == "parse":
            assert response.parse().usage.output_tokens == 15
        elif how == "read":
            response.read()
    event = only_llm(recorder.events(run.id))
    if how == "unread":  # never read: nothing is known
        assert event.quantity == 0 and event.metadata["complete"] is False
    else:
        check(event, streamed=False)


def test_with_streaming_response_stream_left_early(recorder: Any, make_client: Any) -> None:
    drip_anthropic.instrument()
    with (
        drip.run("chat", customer_id=recorder.customer) as run,
        make_client().messages.with_streaming_response.create(**ARGS, stream=True) as response,
    ):
        assert next(iter(response.parse())).type == "message_start"
    event = only_llm(recorder.events(run.id))
    assert (event.quantity, event.metadata["complete"]) == (1211, False)  # what was reported


def test_a_stream_still_open_at_exit_is_recorded_with_what_it_saw(
    recorder: Any, tmp_path: Any
) -> None:
    # a stream held by a long-lived object when the process ends was recorded after drip's
    # exit hook had delivered: 'dropped: recorded after the client was shut down', tokens lost
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "open_at_exit.py"
    script.write_text(
        "import sys, anthropic, httpx2\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from conftest import FakeAnthropic\n"
        "import drip\n"
        "from drip.integrations import anthropic as drip_anthropic\n"
        "drip_anthropic.instrument()\n"
        "client = anthropic.Anthropic(api_key='k', http_client=httpx2.Client("
        "transport=httpx2.MockTransport(FakeAnthropic())))\n"
        "KEPT = []\n"
        "with drip.run('chat', customer_id=sys.argv[1]) as run:\n"
        "    stream = client.messages.create(model='claude-sonnet-4-5', max_tokens=9, "
        "messages=[{'role': 'user', 'content': 'hi'}], stream=True)\n"
        "    next(iter(stream))  # message_start: the input tokens are known\n"
        "    KEPT.append(stream)\n"
        "print(run.id)\n"
    )
    env = {**os.environ, "DRIP_API_KEY": recorder.client.settings.api_key,
           "DRIP_BASE_URL": recorder.client.settings.base_url}  # fmt: skip
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, str(script), recorder.customer, here],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "dropped" not in done.stderr, done.stderr
    event = only_llm(recorder.events(done.stdout.strip()))
    assert (event.quantity, event.metadata["complete"]) == (1211, False)
