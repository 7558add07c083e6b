"""A server that refuses the ``stream_options`` drip adds (Azure before API version
2024-09-01-preview, some OpenAI-compatible servers): the call still works as the caller wrote
it (real openai SDK, network faked)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from drip.integrations import openai as drip_openai

import drip

from .conftest import chat_chunks, sse, sse_response

REFUSAL = {
    "error": {
        "message": "Unrecognized request argument supplied: stream_options",
        "type": "invalid_request_error", "param": None, "code": None,
    }
}  # fmt: skip


class OldServer:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if "stream_options" in body:
            return httpx2.Response(400, json=REFUSAL)
        return sse_response(sse(chat_chunks(include_usage=False)))


@pytest.fixture(autouse=True)
def _forgotten() -> Any:
    from drip.integrations import openai as module

    refusing = getattr(module, "_REFUSING", set())
    refusing.clear()
    yield
    refusing.clear()


def ask(client: Any, **kw: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True, **kw
    )


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_a_refused_stream_option_is_dropped_not_raised(
    recorder: Any, make_client: Any, async_: bool, caplog: pytest.LogCaptureFixture
) -> None:
    server = OldServer()
    drip_openai.instrument()
    client = make_client(async_=async_, handler=server)
    async with drip.run("chat", customer_id=recorder.customer) as run:
        for _ in range(2):
            chunks = [c async for c in await ask(client)] if async_ else list(ask(client))
            assert len(chunks) == 4  # what the caller gets without drip
    # the first call asked, was refused, and was sent again as written; the second did not ask
    assert ["stream_options" in b for b in server.bodies] == [True, False, False]
    events = [e for e in recorder.events(run.id) if e.meter == "llm_tokens"]
    assert [(e.quantity, e.outcome, e.metadata["usage"]) for e in events] == [
        (0, "ok", "missing")] * 2  # fmt: skip
    assert caplog.text.count("refused stream_options") == 1


def test_a_callers_own_stream_options_refused_is_the_callers_error(
    recorder: Any, make_client: Any
) -> None:
    server = OldServer()
    drip_openai.instrument()
    client = make_client(handler=server)
    with (
        drip.run("chat", customer_id=recorder.customer) as run,
        pytest.raises(openai.BadRequestError),
    ):
        ask(client, stream_options={"include_usage": True})
    assert len(server.bodies) == 1  # not sent again: the caller asked for it
    [event] = [e for e in recorder.events(run.id) if e.meter == "llm_tokens"]
    assert (event.outcome, event.error_type) == ("error", "BadRequestError")
