"""``drip demo``: an instrumented sample research agent against the local Drip server.

It records two runs of a research agent inside an OpenTelemetry span (when the SDK is
installed): nested tool calls, an LLM step metered by tokens, a child run, async fetches in
parallel, and one run that fails. Then it reads everything back from the server and prints each
run's timeline as a tree with durations, and the usage per meter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._render import timeline_tree, usage_table
from .client import Drip

__all__ = ["main"]


@contextmanager
def _otel_span(name: str) -> Iterator[str | None]:
    """A real OpenTelemetry span when the SDK is installed; yields its trace id."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        yield None
        return
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    with trace.get_tracer("drip.demo").start_as_current_span(name) as span:
        yield f"{span.get_span_context().trace_id:032x}"


class ResearchAgent:
    """A toy agent whose tools and LLM calls are metered."""

    def __init__(self, client: Drip, seed: int = 7) -> None:
        self.client = client
        self.rng = random.Random(seed)
        metered = client.metered
        self.search = metered(meter="tool_calls", event_type="tool.search")(self._search)
        self.fetch = metered(meter="tool_calls", event_type="tool.fetch")(self._fetch)
        self.llm = metered(
            meter="llm_tokens",
            event_type="llm.call",
            units="tokens",
            quantity=lambda reply: reply["usage"]["total_tokens"],
        )(self._llm)
        self.research = metered(meter="agent_steps", event_type="agent.research")(self._research)

    def _search(self, query: str) -> list[str]:
        time.sleep(0.01)
        return [f"https://example.org/{query.replace(' ', '-')}/{i}" for i in range(3)]

    async def _fetch(self, url: str) -> str:
        await asyncio.sleep(0.005 + self.rng.random() / 100)
        if "broken" in url:
            raise TimeoutError(f"fetching {url} timed out")
        return f"<page {url}>"

    def _llm(self, prompt: str) -> dict[str, Any]:
        time.sleep(0.02)
        prompt_tokens = len(prompt.split()) * 4
        completion = 180 + self.rng.randrange(120)
        return {"text": "summary", "usage": {"total_tokens": prompt_tokens + completion}}

    def _research(self, topic: str) -> str:
        urls = self.search(topic)

        async def fetch_all() -> list[str]:
            return await asyncio.gather(*(self.fetch(u) for u in urls))

        pages = asyncio.run(fetch_all())
        return str(self.llm("Summarise: " + " ".join(pages))["text"])


def _run_agent(client: Drip, agent: ResearchAgent, customer_id: str) -> list[tuple[str, int]]:
    """Record the demo's runs; returns (run id, depth) in display order."""
    shown: list[tuple[str, int]] = []
    with client.run(workflow="research-agent", customer_id=customer_id) as run:
        shown.append((run.id, 0))
        agent.research("usage based pricing")
        with client.run(workflow="report-writer") as child:
            shown.append((child.id, 1))
            agent.llm("Write the report from the summary")
            child.event("report.published", 1, units="reports")
    try:
        with client.run(workflow="research-agent", customer_id=customer_id) as failing:
            shown.append((failing.id, 0))
            agent.search("broken links")
            asyncio.run(agent.fetch("https://example.org/broken"))
    except TimeoutError:
        pass  # the run ended FAILED with error_code TimeoutError; the demo goes on
    return shown


def main(args: argparse.Namespace | None = None) -> int:
    os.environ.setdefault("DRIP_BASE_URL", "local:.drip/demo.db")
    client = Drip()
    print(f"drip demo: Drip API at {client.base_url}")
    customer = client.create_customer(external_customer_id="demo-customer-acme")
    agent = ResearchAgent(client)
    with _otel_span("research-session") as trace_id:
        shown = _run_agent(client, agent, customer.id)
    report = client.flush(timeout=10)
    print(f"delivered: {report}")
    if trace_id:
        print(f"OpenTelemetry trace id: {trace_id}")
    print()
    for run_id, depth in shown:
        print(timeline_tree(client.get_run_timeline(run_id), indent="    " * depth))
        print()
    print(f"usage of customer {customer.id} ({customer.external_customer_id}):")
    print(usage_table(client.get_usage_summary(customer_id=customer.id)))
    client.close()
    return 0
