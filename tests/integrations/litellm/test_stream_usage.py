"""LiteLLM streams record the provider's usage, not LiteLLM's estimate: drip asks for it
(``stream_options={"include_usage": True}``) when the caller did not, and keeps the extra usage
chunk out of the caller's loop (real LiteLLM and openai SDK; only the network is faked)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
litellm = pytest.importorskip("litellm")

from drip.integrations import litellm as litellm_integration  # noqa: E402
from drip.integrations.litellm import DripLogger  # noqa: E402

import drip  # noqa: E402

from .test_litellm import MESSAGES, llm_events  # noqa: E402

# LiteLLM's own pydantic use warns (its models; its stream handler reads a deprecated field)
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Item.*ReadOnly. qualifier:UserWarning"),
    pytest.mark.filterwarnings(r"ignore:Accessing the 'model_:DeprecationWarning"),
]
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


class Provider:
    """A local OpenAI chat endpoint (a real HTTP server on loopback) that streams three words;
    its usage chunk only when asked, and only if it ``honours`` the option. LiteLLM asks for
    usage by itself when handed an openai ``client=``: the common call, by ``api_base`` (or
    OpenAI's own URL), is the one that does not."""

    def __init__(self, honours: bool = True, delay: float = 0) -> None:
        self.honours = honours
        self.delay = delay  # before the usage chunk
        self.bodies: list[dict[str, Any]] = []
        self.url = self.start()
        _started.append(self)

    def answer(self, body: dict[str, Any]) -> tuple[bytes, bytes]:
        self.bodies.append(body)
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                "model": "gpt-4o-mini"}  # fmt: skip
        chunks = [{**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "},
                                        "finish_reason": None}]} for i in range(3)]  # fmt: skip
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        asked = (body.get("stream_options") or {}).get("include_usage") is True
        if asked and self.honours:
            chunks.append({**base, "choices": [], "usage": USAGE})
        sse = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
        return b"".join(sse[:4]), b"".join(sse[4:])

    def start(self) -> str:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                words, end = provider.answer(body)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(words) + len(end)))
                self.end_headers()
                self.wfile.write(words)
                self.wfile.flush()
                time.sleep(provider.delay)
                with contextlib.suppress(OSError):  # the client left
                    self.wfile.write(end)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_started: list[Provider] = []


@pytest.fixture(autouse=True)
def logger() -> Any:
    saved = litellm.callbacks
    handler = DripLogger()
    litellm.callbacks = [handler]
    yield handler
    litellm.callbacks = saved
    while _started:
        _started.pop().stop()


def stream(provider: Provider, async_: bool, **kw: Any) -> Any:
    call = litellm.acompletion if async_ else litellm.completion
    return call(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, api_base=provider.url,
                api_key="k", **kw)  # fmt: skip


async def read(provider: Provider, async_: bool, **kw: Any) -> list[Any]:
    if async_:
        chunks = [chunk async for chunk in await stream(provider, True, **kw)]
        for _ in range(200):  # LiteLLM reports an async stream from a task of this loop
            if not litellm_integration._pending:
                break
            await asyncio.sleep(0.025)
        return chunks
    return list(stream(provider, False, **kw))


def one_event(recorder: Any, run_id: str) -> Any:
    time.sleep(0.3)  # a second, wrong record would arrive by now
    [event] = llm_events(recorder, run_id, 1)
    return event


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_stream_records_the_providers_usage_and_the_caller_sees_no_extra_chunk(
    recorder: Any, async_: bool
) -> None:
    provider = Provider()
    async with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = await read(provider, async_)
    assert provider.bodies[0]["stream_options"] == {"include_usage": True}
    assert len(chunks) == 4 and all(chunk.choices for chunk in chunks)
    event = one_event(recorder, run.id)
    meta = event.metadata
    assert (event.quantity, meta["input_tokens"], meta["output_tokens"]) == (17, 12, 5)
    assert "usage" not in meta and "complete" not in meta and meta["streamed"] is True


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_caller_who_asked_for_usage_still_gets_the_usage_chunk(
    recorder: Any, async_: bool
) -> None:
    provider = Provider()
    async with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = await read(provider, async_, stream_options={"include_usage": True})
    assert len(chunks) == 5 and chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 12
    assert one_event(recorder, run.id).quantity == 17


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_provider_that_ignores_the_option_records_an_estimate_marked_so(
    recorder: Any, async_: bool
) -> None:
    provider = Provider(honours=False)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        chunks = await read(provider, async_)
    assert len(chunks) == 4 and all(chunk.choices for chunk in chunks)
    event = one_event(recorder, run.id)
    assert event.metadata["usage"] == "estimated" and event.quantity > 0


def test_without_a_drip_logger_the_request_is_left_as_written(
    recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LiteLLM copies litellm.callbacks into its other callback lists, and keeps them there
    for name in ("callbacks", "success_callback", "_async_success_callback", "input_callback"):
        kept = [c for c in getattr(litellm, name) if not isinstance(c, DripLogger)]
        monkeypatch.setattr(litellm, name, kept)
    provider = Provider()
    chunks = list(stream(provider, False))
    assert "stream_options" not in provider.bodies[0] and len(chunks) == 4


def finished(chunk: Any) -> bool:
    return bool(chunk.choices) and chunk.choices[0].finish_reason is not None


async def leave_at_finish(provider: Provider, async_: bool) -> None:
    """Read until the chunk with a ``finish_reason``, then close the stream (``with``)."""
    if async_:
        async with await stream(provider, True) as chunks:
            async for chunk in chunks:
                if finished(chunk):
                    break
    else:
        with stream(provider, False) as chunks:
            for chunk in chunks:
                if finished(chunk):
                    break


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_stream_left_at_its_finish_reason_records_the_usage_that_follows(
    recorder: Any, async_: bool
) -> None:
    async with drip.run("chat", customer_id=recorder.customer) as run:
        await leave_at_finish(Provider(delay=0.05), async_)
    event = one_event(recorder, run.id)
    assert (event.quantity, event.metadata["input_tokens"]) == (17, 12)
    assert "complete" not in event.metadata and "usage" not in event.metadata


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_slow_usage_chunk_after_the_finish_reason_is_not_waited_for_long(
    recorder: Any, async_: bool
) -> None:
    async with drip.run("chat", customer_id=recorder.customer) as run:
        started = time.monotonic()
        await leave_at_finish(Provider(delay=5), async_)
        waited = time.monotonic() - started
    assert waited < 2.5  # the read on gives up after 0.5 s, not the provider's 5 s
    event = one_event(recorder, run.id)
    assert (event.quantity, event.metadata["complete"]) == (0, False)
