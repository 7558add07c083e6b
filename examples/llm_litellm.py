"""Meter LiteLLM calls with a CustomLogger; LiteLLM's own mock_response stands in for a provider.

Run: DRIP_BASE_URL=local python examples/llm_litellm.py
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM: no fetch at import

import litellm
from drip.integrations.litellm import DripLogger

import drip
from drip import drip as client


def main() -> None:
    litellm.callbacks = [DripLogger()]
    customer = client.create_customer(external_customer_id="example-litellm")
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with drip.run("triage", customer_id=customer.id) as run:
        litellm.completion(**ask, mock_response="Hello, how can I help?")
        stream = litellm.completion(**ask, mock_response="Streaming hello", stream=True)
        print("streamed:", "".join(c.choices[0].delta.content or "" for c in stream))
    for _ in range(100):  # LiteLLM reports from its own threads: wait for both
        drip.flush(timeout=10)
        events = client.get_run_timeline(run.id).events
        if len(events) == 2:
            break
    for event in events:
        meta = event.metadata or {}
        print(f"{event.meter}: {event.quantity:g} tokens, streamed={meta['streamed']}")


if __name__ == "__main__":
    main()
