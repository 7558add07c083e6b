"""A fake Anthropic API on ``httpx2.MockTransport``: real SDK, only the network faked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

MODEL = "claude-sonnet-4-5-20250929"
USAGE = {
    "input_tokens": 10,
    "output_tokens": 15,
    "cache_creation_input_tokens": 200,
    "cache_read_input_tokens": 1000,
}


def message() -> dict[str, Any]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": USAGE,
    }  # fmt: skip


def events() -> list[dict[str, Any]]:
    start = {
        **message(),
        "content": [],
        "stop_reason": None,
        "usage": {**USAGE, "output_tokens": 1},
    }
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
        for w in ("hel", "lo")
    ]
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *deltas,
        {"type": "content_block_stop", "index": 0},
        # cumulative: the running output count, 15 in all (not 1 + 15)
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 15}},
        {"type": "message_stop"},
    ]  # fmt: skip


class FakeAnthropic:
    def __init__(self) -> None:
        self.status = 200
        self.without_usage = False  # a proxy that drops every usage object

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if self.status != 200:
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": "boom"}}
            return httpx2.Response(self.status, json=error)
        if body.get("stream"):
            items = events()
            if self.without_usage:
                items[0]["message"].pop("usage")
                items[-2].pop("usage")
            text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in items)
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=text.encode()
            )
        return httpx2.Response(200, json=message())


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    from drip.integrations import anthropic as drip_anthropic

    drip_anthropic.uninstrument()
    yield
    drip_anthropic.uninstrument()


@pytest.fixture
def fake() -> FakeAnthropic:
    return FakeAnthropic()


@pytest.fixture
def make_client(fake: FakeAnthropic) -> Any:
    import anthropic

    def make(async_: bool = False) -> Any:
        transport = httpx2.MockTransport(fake)
        if async_:
            return anthropic.AsyncAnthropic(
                api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport)
            )
        return anthropic.Anthropic(
            api_key="sk-test", http_client=httpx2.Client(transport=transport)
        )

    return make
