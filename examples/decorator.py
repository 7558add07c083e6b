"""@drip.metered on the functions that spend: tools, LLM calls, streamed tokens.

Run: DRIP_BASE_URL=local python examples/decorator.py
"""

from __future__ import annotations

import drip


@drip.metered(meter="tool_calls", event_type="tool.search")
def search(query: str) -> list[str]:
    return [f"doc about {query} #{i}" for i in range(3)]


@drip.metered(
    meter="llm_tokens", units="tokens", quantity=lambda reply: reply["usage"]["total_tokens"]
)
def complete(prompt: str) -> dict[str, object]:
    return {"text": "...", "usage": {"total_tokens": 40 + len(prompt)}}


@drip.metered(meter="llm_tokens", event_type="llm.stream", units="tokens")
def stream(prompt: str) -> str:
    out = []
    for token in prompt.split():
        out.append(token)
        drip.current_event().add(1)  # one token at a time, as a streaming API reports them
    return " ".join(out)


def main() -> None:
    customer = drip.drip.create_customer(external_customer_id="example-decorator")
    # Outside a run, a metered call is a usage record of the current customer.
    with drip.customer(customer.id):
        search("pricing")
        complete("Summarise the pricing page")
        stream("one two three four five")
    print(drip.flush(timeout=10))
    summary = drip.drip.get_usage_summary(customer_id=customer.id)
    for meter in summary.meters:
        print(f"{meter.meter}: {meter.quantity:g}")


if __name__ == "__main__":
    main()
