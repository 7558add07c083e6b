"""``drip demo``: an instrumented sample research agent against the local Drip server.

It records two runs of a research agent inside an OpenTelemetry span (when the SDK is
installed): nested tool calls, an LLM step metered by tokens, a child run, async fetches in
parallel, and one run that fails. Then it reads everything back from the server and prints each
run's timeline as a tree with durations, and the usage per meter.

Running it again does not record again (so its totals do not grow): it shows what the
database already holds. ``drip demo --again`` records a new pair of runs and says so. It ends
with the two commands that show the data in the dashboard.
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

from .._render import timeline_tree, usage_table
from ..client import Drip

__all__ = ["add", "main"]

DEMO_DB = os.path.join(".drip", "demo.db")
DEMO_CUSTOMER = "demo-customer-acme"


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


def _recorded(client: Drip, customer_id: str) -> list[tuple[str, int]]:
    """The demo runs already stored (the newest pair), in display order."""
    runs = client.list_runs(customer_id=customer_id, limit=1000).data
    tops = [r for r in runs if r.parent_run_id is None][:2]
    shown: list[tuple[str, int]] = []
    for top in reversed(tops):
        shown.append((top.id, 0))
        shown += [(r.id, 1) for r in reversed(runs) if r.parent_run_id == top.id]
    return shown


def _look_at_it(client: Drip) -> None:
    db = client.settings.local_db
    if not db:
        print(f"See it in the dashboard of the server at {client.base_url.removesuffix('/v1')}/")
        return
    print("Look at this data in the dashboard (the demo's server stopped with it):")
    print(f"  drip serve --db {os.path.relpath(db)}")
    print(f"  then open http://127.0.0.1:8787/#key={client.settings.api_key}")


def main(args: argparse.Namespace | None = None) -> int:
    """Record the demo's runs (once per database unless ``--again``) and show them."""
    os.environ.setdefault("DRIP_BASE_URL", f"local:{DEMO_DB}")
    again = bool(getattr(args, "again", False))
    client = Drip()
    print(f"drip demo: Drip API at {client.base_url}")
    customer = client.create_customer(external_customer_id=DEMO_CUSTOMER)
    shown = [] if again else _recorded(client, customer.id)
    if shown:
        print(
            "The demo runs are already in this database: showing them, not recording again "
            "(`drip demo --again` adds a new pair of runs)."
        )
    else:
        if again:
            print("Recording a NEW pair of demo runs: the totals below include every earlier one.")
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
    print()
    _look_at_it(client)
    client.close()
    return 0


def add(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run an instrumented sample agent")
    demo.add_argument(
        "--again", action="store_true", help="record a new pair of runs even if some exist"
    )
    demo.set_defaults(handler=main)
