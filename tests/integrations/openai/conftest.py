"""A fake OpenAI API on ``httpx2.MockTransport``: real SDK, only the network faked."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

CHAT_USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 100},
    "completion_tokens_details": {"reasoning_tokens": 10},
}
RESPONSES_USAGE = {
    "input_tokens": 50,
    "output_tokens": 20,
    "total_tokens": 70,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 5},
}
MODEL = "gpt-4o-mini-2024-07-18"


def chat_completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello"}}],
        "usage": CHAT_USAGE,
    }  # fmt: skip


def chat_chunks(include_usage: bool, words: int = 3) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
        for i in range(words)
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": CHAT_USAGE})
    return chunks


def response_obj(status: str = "completed") -> dict[str, Any]:
    return {
        "id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4.1",
        "status": status, "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "usage": RESPONSES_USAGE,
    }  # fmt: skip


def response_events() -> list[dict[str, Any]]:
    created = {**response_obj("in_progress"), "usage": None}
    return [
        {"type": "response.created", "sequence_number": 0, "response": created},
        {"type": "response.completed", "sequence_number": 1, "response": response_obj()},
    ]  # fmt: skip


def sse(items: list[dict[str, Any]], done: bool = True) -> bytes:
    body = "".join(f"data: {json.dumps(item)}\n\n" for item in items)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


def sse_response(content: bytes) -> httpx2.Response:
    """A streamed answer: ``content`` (``sse(items)`` or raw SSE bytes) as an event stream."""
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)


class FakeOpenAI:
    """Answers chat and responses requests; remembers each request's JSON body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.status != 200:
            return httpx2.Response(self.status, json={"error": {"message": "boom", "type": "x"}})
        chat = request.url.path.endswith("/chat/completions")
        if body.get("stream"):
            if chat:
                usage = (body.get("stream_options") or {}).get("include_usage", False)
                items = chat_chunks(usage)
            else:
                items = response_events()
            return sse_response(sse(items))
        return httpx2.Response(200, json=chat_completion() if chat else response_obj())

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)


@pytest.fixture(autouse=True)
def _uninstrumented() -> Any:
    from drip.integrations import openai as drip_openai

    drip_openai.uninstrument()
    yield
    drip_openai.uninstrument()


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def make_client(fake: FakeOpenAI) -> Any:
    """``make_client(async_=False)``: a real OpenAI client whose network is ``fake``."""
    import openai

    def make(async_: bool = False, handler: Any = None) -> Any:
        transport = httpx2.MockTransport(handler or fake)
        if async_:
            return openai.AsyncOpenAI(
                api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport)
            )
        return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport))

    return make


@pytest.fixture(autouse=True)
def _warned_afresh() -> Any:
    """Each test sees drip's once-per-model warnings of a call without usage afresh."""
    from drip.integrations import _llm

    warned = getattr(_llm, "_missing_warned", set())
    warned.clear()
    yield
    warned.clear()


@pytest.fixture(autouse=True)
def _no_background_responses() -> Any:
    """Each test starts with no background response waiting or recorded (the fakes reuse ids)."""
    from drip.integrations import _openai_background as background

    yield
    background._end_waiting_at_exit()
    background._recorded.clear()
