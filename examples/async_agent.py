"""An asyncio agent: async tools, an async generator of tokens, tasks inheriting the run.

Run: DRIP_BASE_URL=local python examples/async_agent.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import drip


@drip.metered(meter="tool_calls", event_type="tool.lookup")
async def lookup(item: str) -> str:
    await asyncio.sleep(0.01)
    return item.upper()


@drip.metered(meter="llm_tokens", event_type="llm.stream", units="tokens")
async def tokens(prompt: str) -> AsyncIterator[str]:
    for word in prompt.split():
        drip.current_event().add(1)
        await asyncio.sleep(0)
        yield word  # the event is recorded when the stream finishes


async def handle(customer_id: str, request: str) -> int:
    async with drip.run(workflow="async-agent", customer_id=customer_id) as run:
        await asyncio.gather(*(lookup(part) for part in request.split()))  # tasks join the run
        streamed = [t async for t in tokens(request)]
        run.event("answer.sent", 1)
        return len(streamed)


async def main() -> None:
    async with drip.AsyncDrip() as client:
        customer = await client.create_customer(external_customer_id="example-async")
        results = await asyncio.gather(
            *(handle(customer.id, f"query number {i}") for i in range(5))
        )
        print(f"{len(results)} requests, {sum(results)} tokens streamed")
        print(drip.flush(timeout=10))
        summary = await client.get_usage_summary(customer_id=customer.id)
        print({m.meter: m.quantity for m in summary.meters})


if __name__ == "__main__":
    asyncio.run(main())
