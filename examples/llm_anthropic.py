"""Meter Anthropic calls, prompt caching included: cache reads and writes are billed tokens.

The provider is faked on the network layer (httpx2.MockTransport) so this runs offline.

Run: DRIP_BASE_URL=local python examples/llm_anthropic.py
"""

from __future__ import annotations

import json

import anthropic
import httpx2
from drip.integrations import anthropic as drip_anthropic

import drip
from drip import drip as client

MODEL = "claude-sonnet-4-5-20250929"
USAGE = {"input_tokens": 12, "output_tokens": 40, "cache_creation_input_tokens": 0,
         "cache_read_input_tokens": 3000}  # fmt: skip


def fake_anthropic(request: httpx2.Request) -> httpx2.Response:
    message = {"id": "m1", "type": "message", "role": "assistant", "model": MODEL,
               "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn",
               "stop_sequence": None, "usage": USAGE}  # fmt: skip
    if not json.loads(request.content).get("stream"):
        return httpx2.Response(200, json=message)
    events = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                              "usage": {**USAGE, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello!"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 40}},  # cumulative: 40 in all, not 1 + 40
        {"type": "message_stop"},
    ]  # fmt: skip
    sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse.encode())


def main() -> None:
    drip_anthropic.instrument()
    llm = anthropic.Anthropic(api_key="sk-fake", http_client=httpx2.Client(
        transport=httpx2.MockTransport(fake_anthropic)))  # fmt: skip
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 200,
           "messages": [{"role": "user", "content": "Say hello"}]}  # fmt: skip

    customer = client.create_customer(external_customer_id="example-anthropic")
    with drip.run("greeter", customer_id=customer.id) as run:
        llm.messages.create(**ask)
        with llm.messages.stream(**ask) as stream:
            print("streamed:", "".join(stream.text_stream))
    drip.flush(timeout=10)
    for event in client.get_run_timeline(run.id).events:
        meta = event.metadata or {}
        print(f"{event.meter}: {event.quantity:g} tokens (cache reads "
              f"{meta['cached_input_tokens']}), streamed={meta['streamed']}, "
              f"cost_usd={meta['cost_usd']}")  # fmt: skip


if __name__ == "__main__":
    main()
