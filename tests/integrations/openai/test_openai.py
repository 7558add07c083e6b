"""drip.integrations.openai with the real openai SDK; only the network is faked (httpx2)."""

from __future__ import annotations

import gc
import json
from typing import Any

import openai
import pytest
from drip.integrations import openai as drip_openai
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.responses import Responses

import drip

from .conftest import sse_response

MODEL = "gpt-4o-mini-2024-07-18"
# gpt-4o-mini: 20 plain input x 0.15 + 100 cached x 0.075 + 30 output x 0.6, per million
CHAT_COST = 2.85e-05
CHAT_TOKENS = {
    "provider": "openai", "model": MODEL, "input_tokens": 120, "output_tokens": 30,
    "cached_input_tokens": 100, "cache_creation_input_tokens": 0, "reasoning_tokens": 10,
}  # fmt: skip


def only_llm(events: list[Any]) -> Any:
    llm = [e for e in events if e.meter == "llm_tokens"]
    assert len(llm) == 1, events
    return llm[0]


def check_chat(event: Any, *, streamed: bool) -> None:
    assert (event.quantity, event.units, event.outcome) == (150, "tokens", "ok")
    meta = event.metadata or {}
    assert {k: meta.get(k) for k in CHAT_TOKENS} == CHAT_TOKENS
    assert meta["streamed"] is streamed and "complete" not in meta
    assert meta["cost_usd"] == pytest.approx(CHAT_COST)


def ask(client: Any, **kw: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], **kw
    )


def test_create_records_one_event_with_exact_tokens(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        answer = ask(client)
    assert answer.choices[0].message.content == "hello"
    check_chat(only_llm(recorder.events(run.id)), streamed=False)


async def test_async_create(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client(async_=True)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        answer = await ask(client)
    assert answer.usage.total_tokens == 150
    check_chat(only_llm(recorder.events(run.id)), streamed=False)


def test_stream_asks_for_usage_and_hides_the_extra_chunk(
    recorder: Any, make_client: Any, fake: Any
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = list(ask(client, stream=True))
    assert fake.bodies[0]["stream_options"] == {"include_usage": True}
    assert len(chunks) == 4 and all(c.choices for c in chunks)  # what the caller saw without drip
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


def test_stream_where_the_caller_asked_for_usage_keeps_the_chunk(
    recorder: Any, make_client: Any
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))
    assert len(chunks) == 5 and chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 150
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


async def test_async_stream(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client(async_=True)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = await ask(client, stream=True)
        chunks = [c async for c in stream]
    assert len(chunks) == 4
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


def test_stream_helper_and_the_with_block(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with (
        drip.run("chat", customer_id=recorder.customer) as run,
        client.chat.completions.stream(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "w0 w1 w2 "
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


@pytest.mark.parametrize("how", ["break-and-gc", "close", "with-exit"])
def test_abandoned_stream_records_once_incomplete(
    recorder: Any, make_client: Any, how: str
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        if how == "with-exit":
            with ask(client, stream=True) as stream:
                next(iter(stream))
        else:
            stream = ask(client, stream=True)
            for _ in stream:
                break
            if how == "close":
                stream.close()
                stream.close()
            del stream
            gc.collect()
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["streamed"] is True
    assert event.quantity == 0 and "input_tokens" not in event.metadata  # absent, not 0


def test_responses_create_and_stream(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("resp", customer_id=recorder.customer) as run:
        client.responses.create(model="gpt-4.1", input="hi")
        events = list(client.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert [e.type for e in events][-1] == "response.completed"
    llm = [e for e in recorder.events(run.id) if e.meter == "llm_tokens"]
    assert [e.metadata["streamed"] for e in llm] == [False, True]
    for event in llm:
        assert event.quantity == 70 and event.metadata["reasoning_tokens"] == 5
        # gpt-4.1: 50 x 2.0 + 20 x 8.0 per million
        assert event.metadata["cost_usd"] == pytest.approx(2.6e-04)


def test_raw_response(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.parse().usage.total_tokens == 150
        assert raw.http_response.status_code == 200
    check_chat(only_llm(recorder.events(run.id)), streamed=False)


def test_instrumenting_twice_records_once(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    drip_openai.instrument()
    client = make_client()
    drip_openai.instrument(client)  # the class already is: nothing more
    with drip.run("chat", customer_id=recorder.customer) as run:
        ask(client)
    assert only_llm(recorder.events(run.id)).quantity == 150


def test_one_client_only(recorder: Any, make_client: Any) -> None:
    metered, plain = make_client(), make_client()
    drip_openai.instrument(metered)
    with drip.run("chat", customer_id=recorder.customer) as run:
        ask(metered)
        ask(plain)
    assert only_llm(recorder.events(run.id)).quantity == 150


def test_uninstrument_restores_the_original_methods(make_client: Any) -> None:
    originals = {cls: vars(cls)["create"] for cls in (Completions, AsyncCompletions, Responses)}
    client = make_client()
    resource = client.chat.completions
    drip_openai.instrument()
    drip_openai.instrument(make_client())
    assert vars(Completions)["create"] is not originals[Completions]
    drip_openai.uninstrument()
    assert {cls: vars(cls)["create"] for cls in originals} == originals
    assert "create" not in vars(resource)


def test_provider_error_propagates_unchanged_and_the_event_is_error(
    recorder: Any, make_client: Any, fake: Any
) -> None:
    drip_openai.instrument()
    fake.status = 400
    client = make_client()
    with (
        pytest.raises(openai.BadRequestError) as info,
        drip.run("chat", customer_id=recorder.customer) as run,
    ):
        ask(client)
    assert info.value.status_code == 400 and "boom" in str(info.value)
    event = only_llm(recorder.events(run.id))
    assert (event.outcome, event.error_type, event.quantity) == ("error", "BadRequestError", 0)


def test_nests_under_the_current_metered_call(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()

    @drip.metered("agent_step")
    def step() -> Any:
        return ask(client)

    with drip.run("chat", customer_id=recorder.customer) as run:
        step()
    events = recorder.events(run.id)
    parent = next(e for e in events if e.meter == "agent_step")
    assert only_llm(events).parent_event_id == parent.id


def test_outside_a_run_it_is_usage_of_the_current_customer(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.customer(recorder.customer):
        ask(client)
    recorder.client.flush(30)
    summary = recorder.client.get_usage_summary(customer_id=recorder.customer, meter="llm_tokens")
    [meter] = summary.meters
    assert (meter.usage_records, meter.quantity) == (1, 150.0)


def test_parse_and_the_responses_stream_helper(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        parsed = client.chat.completions.parse(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        with client.responses.stream(model="gpt-4.1", input="hi") as stream:
            final = stream.get_final_response()
    assert parsed.choices[0].message.content == "hello" and final.usage.total_tokens == 70
    llm = [e for e in recorder.events(run.id) if e.meter == "llm_tokens"]
    assert [(e.quantity, e.metadata["streamed"]) for e in llm] == [(150, False), (70, True)]


def test_a_broken_price_file_never_breaks_the_call(
    recorder: Any, make_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drip import pricing

    bad = tmp_path / "prices.json"
    bad.write_text("{not json")
    monkeypatch.setenv("DRIP_PRICES", str(bad))
    pricing.reset()
    drip_openai.instrument()
    try:
        with drip.run("chat", customer_id=recorder.customer) as run:
            assert ask(make_client()).usage.total_tokens == 150
    finally:
        monkeypatch.delenv("DRIP_PRICES")
        pricing.reset()
    event = only_llm(recorder.events(run.id))
    assert event.quantity == 150 and "cost_usd" not in event.metadata


def test_the_caller_keeps_the_sdks_stream_object(recorder: Any, make_client: Any) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer):
        stream = ask(client, stream=True)
        assert isinstance(stream, openai.Stream) and type(stream).__name__ == "Stream"
        assert type(stream).__qualname__ == openai.Stream.__qualname__
        first = next(stream)  # ``__next__`` pulls from the same metered items as ``for``
        rest = list(stream)
    assert len([first, *rest]) == 4 and all(c.choices for c in [first, *rest])


@pytest.mark.parametrize("how", ["never-read", "close-unread", "break-and-gc", "close"])
def test_abandoned_stream_keeps_the_model_the_chunks_named(
    recorder: Any, make_client: Any, how: str
) -> None:
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run:
        stream = ask(client, stream=True)
        if how in ("break-and-gc", "close"):
            for _ in stream:
                break
        if how.startswith("close"):
            stream.close()
        del stream
        gc.collect()
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["streamed"] is True
    read = how in ("break-and-gc", "close")  # unread: the model asked for, no chunk named one
    assert event.metadata["model"] == (MODEL if read else "gpt-4o-mini")


@pytest.mark.parametrize("how", ["close", "with-exit", "break-and-gc"])
async def test_async_abandoned_stream_records_once_incomplete(
    recorder: Any, make_client: Any, how: str
) -> None:
    drip_openai.instrument()
    client = make_client(async_=True)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        if how == "with-exit":
            async with await ask(client, stream=True) as stream:
                await stream.__anext__()
        else:
            stream = await ask(client, stream=True)
            async for _ in stream:
                break
            if how == "close":
                await stream.close()
            del stream
            gc.collect()  # recorded now, not when the loop closes the async generator
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["model"] == MODEL
    assert event.quantity == 0 and "input_tokens" not in event.metadata


def test_a_stream_error_propagates_and_records_error(recorder: Any, make_client: Any) -> None:
    def broken(request: Any) -> Any:
        body = b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, '
        body += f'"model": "{MODEL}", "choices": []}}\n\ndata: {{not json\n\n'.encode()
        return sse_response(body)

    drip_openai.instrument()
    client = make_client(handler=broken)
    with drip.run("chat", customer_id=recorder.customer) as run:
        stream = ask(client, stream=True)
        with pytest.raises(ValueError):  # the SDK's JSON error, unchanged
            list(stream)
    event = only_llm(recorder.events(run.id))
    assert (event.outcome, event.metadata["complete"], event.metadata["model"]) == (
        "error", False, MODEL)  # fmt: skip


def test_an_unreadable_usage_is_logged_and_the_chunk_passed_on(
    recorder: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def odd_usage(request: Any) -> Any:
        from .conftest import chat_chunks, sse

        chunks = chat_chunks(include_usage=True)
        chunks[-1]["usage"] = 7  # not the object drip reads token counts from
        return sse_response(sse(chunks))

    drip_openai.instrument()
    client = make_client(handler=odd_usage)
    with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = list(ask(client, stream=True))
    assert len(chunks) == 5 and chunks[-1].choices == []  # unread, so not hidden
    assert "could not read a stream item" in caplog.text
    assert "usage chunk came in a shape drip could not read" in caplog.text
    event = only_llm(recorder.events(run.id))
    # read to its end, with no usage drip could read: missing, not abandoned
    assert event.metadata["usage"] == "missing" and event.quantity == 0
    assert "complete" not in event.metadata and "input_tokens" not in event.metadata


@pytest.mark.parametrize("asked", [False, True], ids=["drip-asked", "caller-asked"])
def test_the_sdk_never_parses_the_usage_chunk_drip_hides(
    recorder: Any, make_client: Any, asked: bool
) -> None:
    drip_openai.instrument()
    client = make_client()
    parse = client._process_response_data
    parsed: list[Any] = []
    client._process_response_data = lambda **kw: parsed.append(parse(**kw)) or parsed[-1]
    options = {"stream_options": {"include_usage": True}} if asked else {}
    with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = list(ask(client, stream=True, **options))
    assert chunks == parsed and len(chunks) == (5 if asked else 4)  # 3 words, the stop chunk
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


@pytest.mark.parametrize(
    "separators", [(",", ":"), (", ", " : "), (",", ":\t")], ids=["compact", "spaced", "tab"]
)
@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_any_json_spacing_of_the_usage_chunk_is_read_and_hidden(
    recorder: Any, make_client: Any, separators: tuple[str, str], async_: bool
) -> None:
    from .conftest import chat_chunks

    def spaced(request: Any) -> Any:
        body = "".join(
            f"data: {json.dumps(c, separators=separators)}\n\n" for c in chat_chunks(True)
        )
        return sse_response((body + "data: [DONE]\n\n").encode())

    drip_openai.instrument()
    client = make_client(async_=async_, handler=spaced)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        if async_:
            chunks = [c async for c in await ask(client, stream=True)]
        else:
            chunks = list(ask(client, stream=True))
    assert len(chunks) == 4 and all(c.choices for c in chunks)
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


def test_usage_on_a_chunk_with_choices_is_read_and_shown(recorder: Any, make_client: Any) -> None:
    from .conftest import CHAT_USAGE, chat_chunks, sse

    def usage_on_the_stop_chunk(request: Any) -> Any:
        chunks = chat_chunks(False)
        chunks[-1]["usage"] = CHAT_USAGE  # some compatible servers send it there
        return sse_response(sse(chunks))

    drip_openai.instrument()
    client = make_client(handler=usage_on_the_stop_chunk)
    with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = list(ask(client, stream=True))
    assert len(chunks) == 4 and chunks[-1].usage.total_tokens == 150
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_dropped_stream_records_at_once_without_the_cyclic_gc(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_)
    gc.disable()  # only reference counting can free the stream before the run ends
    try:
        async with drip.run("chat", customer_id=recorder.customer) as run:
            if async_:
                async for _ in await ask(client, stream=True):
                    break
            else:
                for _ in ask(client, stream=True):
                    break
    finally:
        gc.enable()
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["model"] == MODEL


def test_an_sdk_without_the_responses_api_still_meters_chat(
    recorder: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # openai before 1.66 (inside the extra's range, openai>=1.40) has no openai.resources.
    # responses: instrument() raised ModuleNotFoundError there instead of metering chat calls
    import sys

    monkeypatch.setitem(sys.modules, "openai.resources.responses", None)
    drip_openai.instrument()
    client = make_client()
    monkeypatch.setattr(type(client), "responses", None)  # an old client has no .responses
    drip_openai.instrument(client)
    with drip.run("chat", customer_id=recorder.customer) as run:
        ask(client)
    check_chat(only_llm(recorder.events(run.id)), streamed=False)


async def test_a_client_instrumented_alone_stays_metered_through_with_options(
    recorder: Any, make_client: Any
) -> None:
    # with_options() / copy() give a new client with new resources: they were not metered
    from drip.integrations.openai import _patches

    client = make_client()
    drip_openai.instrument(client)
    kept = len(_patches._done)
    with drip.run("chat", customer_id=recorder.customer) as run:
        ask(client.with_options(timeout=5))
        ask(client.copy(max_retries=0).with_options(timeout=7))  # a copy's copy too
    assert [e.quantity for e in recorder.events(run.id)] == [150, 150]
    assert len(_patches._done) == kept  # copies are not kept for uninstrument: freed with them
    async_client = make_client(async_=True)
    drip_openai.instrument(async_client)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        await ask(async_client.with_options(timeout=5))
    assert [e.quantity for e in recorder.events(run.id)] == [150]
    drip_openai.uninstrument()
    assert "with_options" not in vars(client) and "copy" not in vars(client)


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_leaving_a_stream_helper_early_records_at_once(
    recorder: Any, make_client: Any, api: str, async_: bool
) -> None:
    # the helpers close the HTTP response, not the stream drip watches: the call was recorded
    # only when the helper was freed, after the run here (the caller still holds ``stream``)
    drip_openai.instrument()
    client = make_client(async_=async_)
    if api == "chat":
        manager = client.chat.completions.stream(model="gpt-4o-mini", messages=[])
    else:
        manager = client.responses.stream(model="gpt-4.1", input="hi")
    async with drip.run("chat", customer_id=recorder.customer) as run:
        if async_:
            async with manager as stream:
                async for _ in stream:
                    break
        else:
            with manager as stream:
                for _ in stream:
                    break
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.metadata["streamed"] is True
    assert stream is not None  # still held by the caller
