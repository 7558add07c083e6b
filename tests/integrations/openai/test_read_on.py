"""A stream the caller leaves at its ``finish_reason`` was billed: drip reads on (bounded) for
the usage that follows (real openai SDK; the network faked in memory, or a loopback server
that holds the usage chunk back)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from drip.integrations import openai as drip_openai

import drip

from .conftest import MODEL, chat_chunks, response_obj, sse, sse_response
from .test_openai import check_chat, only_llm


def finished(chunk: Any) -> bool:
    return bool(chunk.choices) and chunk.choices[0].finish_reason is not None


def ask(client: Any, **kw: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True, **kw)


@pytest.mark.parametrize("asked", [False, True], ids=["drip-asked", "caller-asked"])
@pytest.mark.parametrize("how", ["close", "with-exit", "dropped"])
def test_a_chat_stream_left_at_its_finish_reason_records_its_usage(
    recorder: Any, make_client: Any, how: str, asked: bool
) -> None:
    drip_openai.instrument()
    client = make_client()
    options = {"stream_options": {"include_usage": True}} if asked else {}
    with drip.run("chat", customer_id=recorder.customer) as run:
        stream = ask(client, **options)
        if how == "with-exit":
            with stream:
                for chunk in stream:
                    if finished(chunk):
                        break
        else:
            for chunk in stream:
                if finished(chunk):
                    break
            if how == "close":
                stream.close()
            del stream
            gc.collect()
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


@pytest.mark.parametrize("how", ["close", "with-exit", "dropped"])
async def test_an_async_chat_stream_left_at_its_finish_reason_records_its_usage(
    recorder: Any, make_client: Any, how: str
) -> None:
    drip_openai.instrument()
    client = make_client(async_=True)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = await ask(client)
        if how == "with-exit":
            async with stream:
                async for chunk in stream:
                    if finished(chunk):
                        break
        else:
            async for chunk in stream:
                if finished(chunk):
                    break
            if how == "close":
                await stream.close()
            else:  # asyncio closes a dropped async generator in a task of its own
                await stream._iterator.aclose()
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


async def test_an_async_chat_stream_dropped_at_its_finish_reason_records_its_usage(
    recorder: Any, make_client: Any
) -> None:
    # no aclose, no ``async with``: the stream is freed when ``use`` returns, and its call was
    # recorded then, before drip could await the usage chunk
    drip_openai.instrument()
    client = make_client(async_=True)

    async def use() -> None:
        async for chunk in await ask(client):
            if finished(chunk):
                break

    async with drip.run("chat", customer_id=recorder.customer) as run:
        await use()
        for _ in range(100):  # drip reads on in a task of this loop
            await asyncio.sleep(0.01)
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_stream_helper_left_at_content_done_records_its_usage(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_)
    manager = client.chat.completions.stream(model="gpt-4o-mini", messages=[])
    async with drip.run("chat", customer_id=recorder.customer) as run:
        if async_:
            async with manager as stream:
                async for event in stream:
                    if event.type == "content.done":
                        break
        else:
            with manager as stream:
                for event in stream:
                    if event.type == "content.done":
                        break
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


def responses_with_items() -> list[dict[str, Any]]:
    created = {**response_obj("in_progress"), "usage": None}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "hi", "annotations": []}]}  # fmt: skip
    return [
        {"type": "response.created", "sequence_number": 0, "response": created},
        {"type": "response.output_item.done", "sequence_number": 1, "output_index": 0,
         "item": item},
        {"type": "response.completed", "sequence_number": 2, "response": response_obj()},
    ]  # fmt: skip


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_responses_stream_left_at_its_last_item_records_its_usage(
    recorder: Any, make_client: Any, async_: bool
) -> None:
    drip_openai.instrument()
    client = make_client(async_=async_, handler=lambda r: sse_response(sse(responses_with_items())))
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = client.responses.create(model="gpt-4.1", input="hi", stream=True)
        if async_:
            async with await stream as events:
                async for event in events:
                    if event.type == "response.output_item.done":
                        break
        else:
            with stream as events:
                for event in events:
                    if event.type == "response.output_item.done":
                        break
    event = only_llm(recorder.events(run.id))
    assert event.quantity == 70 and "complete" not in event.metadata


def test_a_stream_left_early_is_not_read_on(recorder: Any, make_client: Any) -> None:
    # before any finish_reason the model may still be generating: leaving stops it
    drip_openai.instrument()
    client = make_client()
    with drip.run("chat", customer_id=recorder.customer) as run, ask(client) as stream:
        next(iter(stream))
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.quantity == 0


@pytest.fixture
def held_back() -> Iterator[Any]:
    """``held_back(delay)``: the base URL of a loopback server whose chat streams send
    everything up to the finish chunk, then the usage chunk ``delay`` seconds later."""
    servers: list[socket.socket] = []

    def start(delay: float) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def answer(conn: socket.socket) -> None:
            with conn:
                conn.recv(65536)
                chunks = chat_chunks(include_usage=True)
                head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                conn.sendall(head + b"connection: close\r\n\r\n" + sse(chunks[:-1], done=False))
                time.sleep(delay)
                with contextlib.suppress(OSError):  # the client left
                    conn.sendall(sse(chunks[-1:]))

        def accept() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/v1"

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_the_usage_a_little_later_on_the_wire_is_read(
    recorder: Any, held_back: Any, async_: bool
) -> None:
    drip_openai.instrument()
    kind = openai.AsyncOpenAI if async_ else openai.OpenAI
    client = kind(api_key="sk-test", base_url=held_back(0.05), max_retries=0)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        if async_:
            async with await ask(client) as stream:
                async for chunk in stream:
                    if finished(chunk):
                        break
        else:
            with ask(client) as stream:
                for chunk in stream:
                    if finished(chunk):
                        break
    check_chat(only_llm(recorder.events(run.id)), streamed=True)


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_slow_usage_chunk_is_waited_for_briefly_then_recorded_incomplete(
    recorder: Any, held_back: Any, async_: bool
) -> None:
    drip_openai.instrument()
    kind = openai.AsyncOpenAI if async_ else openai.OpenAI
    client = kind(api_key="sk-test", base_url=held_back(5), max_retries=0)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        started = time.monotonic()
        if async_:
            async with await ask(client) as stream:
                async for chunk in stream:
                    if finished(chunk):
                        break
        else:
            with ask(client) as stream:
                for chunk in stream:
                    if finished(chunk):
                        break
        waited = time.monotonic() - started
    assert waited < 2  # READ_ON_SECONDS (0.5), not the server's 5 s
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.quantity == 0
    assert event.metadata["model"] == MODEL and "input_tokens" not in event.metadata


def test_the_wait_works_on_a_socket_past_fd_setsize(recorder: Any, held_back: Any) -> None:
    # select.select refuses a file descriptor >= 1024, which a busy process has: the read on
    # gave up there at once, and the billed call recorded complete: false
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip("cannot open 1100 files here")
    if soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1100, hard))
    low = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        drip_openai.instrument()
        client = openai.OpenAI(api_key="sk-test", base_url=held_back(0.05), max_retries=0)
        with drip.run("chat", customer_id=recorder.customer) as run, ask(client) as stream:
            for chunk in stream:
                if finished(chunk):
                    break
        check_chat(only_llm(recorder.events(run.id)), streamed=True)
    finally:
        for fd in low:
            os.close(fd)
        if soft < 1100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_close_cancelled_while_reading_on_still_closes_the_response(
    recorder: Any, held_back: Any
) -> None:
    drip_openai.instrument()
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=held_back(5), max_retries=0)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        stream = await ask(client)
        async for chunk in stream:
            if finished(chunk):
                break
        closing = asyncio.create_task(stream.close())
        await asyncio.sleep(0.1)  # reading on, for the usage the server holds back
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert stream.response.is_closed  # the connection is not left open
    event = only_llm(recorder.events(run.id))
    assert event.metadata["complete"] is False and event.quantity == 0
