"""Meter OpenAI calls: plain, streamed and abandoned, with cost per model.

The provider is faked on the network layer (httpx2.MockTransport) so this runs offline;
with a real key, drop ``http_client=`` and it meters real calls the same way.

Run: DRIP_BASE_URL=local python examples/llm_openai.py
"""

from __future__ import annotations

import json

import httpx2
import openai
from drip.integrations import openai as drip_openai

import drip
from drip import drip as client

USAGE = {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960,
         "prompt_tokens_details": {"cached_tokens": 800}}  # fmt: skip
BASE = {"id": "c1", "created": 1, "model": "gpt-4o-mini-2024-07-18"}


def fake_openai(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    if not body.get("stream"):
        message = {"role": "assistant", "content": "Tides follow the moon."}
        return httpx2.Response(200, json={**BASE, "object": "chat.completion", "usage": USAGE,
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}]})  # fmt: skip
    chunks = [{**BASE, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
              for w in ("Tides ", "follow ", "the ", "moon.")]  # fmt: skip
    if (body.get("stream_options") or {}).get("include_usage"):  # drip asks for it
        chunks.append({**BASE, "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse.encode())


def main() -> None:
    drip_openai.instrument()  # every OpenAI client from here on
    llm = openai.OpenAI(api_key="sk-fake", http_client=httpx2.Client(
        transport=httpx2.MockTransport(fake_openai)))  # fmt: skip
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Why tides?"}]}

    customer = client.create_customer(external_customer_id="example-openai")
    with drip.run("support-answer", customer_id=customer.id) as run:
        llm.chat.completions.create(**ask)
        text = "".join(c.choices[0].delta.content or "" for c in llm.chat.completions.create(
            **ask, stream=True))  # fmt: skip
        for _ in llm.chat.completions.create(**ask, stream=True):
            break  # abandoned: still recorded, once, marked incomplete
    print(f"streamed text: {text!r}")
    drip.flush(timeout=10)
    for event in client.get_run_timeline(run.id).events:
        meta = event.metadata or {}
        print(f"{event.meter}: {event.quantity:g} tokens, model={meta.get('model')}, "
              f"cost_usd={meta.get('cost_usd')}, complete={meta.get('complete', True)}")  # fmt: skip


if __name__ == "__main__":
    main()
