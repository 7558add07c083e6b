"""Meter an OpenAI Agents SDK agent: each model call once, in one drip run per agent run.

The OpenAI API is faked on the network layer (httpx2.MockTransport); no key, no network.

Run: DRIP_BASE_URL=local python examples/llm_openai_agents.py
"""

from __future__ import annotations

import asyncio

import agents
import httpx2
import openai
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner
from drip.integrations.openai_agents import DripTracingProcessor

import drip
from drip import drip as client


def fake_openai(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Your order ships today."}}],
        "usage": {"prompt_tokens": 140, "completion_tokens": 9, "total_tokens": 149},
    })  # fmt: skip


async def main() -> None:
    agents.set_trace_processors([DripTracingProcessor()])  # only drip: nothing is exported
    llm = openai.AsyncOpenAI(api_key="sk-fake", http_client=httpx2.AsyncClient(
        transport=httpx2.MockTransport(fake_openai)))  # fmt: skip
    agent = Agent(
        name="support",
        instructions="Answer briefly.",
        model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=llm),
    )
    customer = client.create_customer(external_customer_id="example-agents")
    config = RunConfig(workflow_name="order_support",
                       trace_metadata={"drip_customer_id": customer.id})  # fmt: skip
    result = await Runner.run(agent, "Where is my order?", run_config=config)
    print("agent:", result.final_output)
    drip.flush(timeout=10)
    run = client.list_runs(customer_id=customer.id).data[0]  # newest first
    for event in client.get_run_timeline(run.id).events:
        print(f"{event.meter}: {event.quantity:g} tokens, cost_usd={event.metadata['cost_usd']}")


if __name__ == "__main__":
    asyncio.run(main())
