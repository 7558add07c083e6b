"""Fixtures for the integration tests: the default drip client on a fresh account.

``recorder`` (LLM integrations) configures drip's default client (strict, quick flushes) against
the live local server and gives a ``Recorder`` with a customer id and ``events(run_id)``, which
flushes and reads the run's timeline back from the server. ``live`` (web integrations) is the
default client, not strict: a handler's metered call outside a run is logged, as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import drip
from drip import Drip
from drip._default import configure, reset_default_client


@dataclass
class Recorder:
    client: Drip
    customer: str

    def events(self, run_id: str) -> list[Any]:
        """Flush, then the run's events as the server holds them, oldest first."""
        report = self.client.flush(30)
        assert report.ok, report
        return list(self.client.get_run_timeline(run_id).events)

    def run(self, run_id: str) -> Any:
        self.client.flush(30)
        return self.client.get_run(run_id)


@pytest.fixture
def recorder(account: Any) -> Iterator[Recorder]:
    client = configure(
        api_key=account.secret_key, base_url=account.base_url, strict=True, flush_interval=0.05
    )
    try:
        customer = client.create_customer(external_customer_id="llm_user").id
        yield Recorder(client, customer)
    finally:
        reset_default_client()


@pytest.fixture
def live(account: Any) -> Iterator[Drip]:
    """The default client (what ``drip.run`` records into), on a fresh account (not strict:
    a handler's metered call outside a run is logged, as in production)."""
    client = drip.configure(
        api_key=account.secret_key, base_url=account.base_url, flush_interval=0.05
    )
    try:
        yield client
    finally:
        reset_default_client()


@pytest.fixture
def customers(live: Drip) -> list[str]:
    """Five customers on the server."""
    return [live.create_customer(external_customer_id=f"web_{i}").id for i in range(5)]


@pytest.fixture
def slug(live: Drip) -> Callable[[str], str]:
    """The workflow slug (what the SDK named it) of a workflow id; the server titles the name."""

    def of(workflow_id: str) -> str:
        return {w.id: w.slug for w in live.list_workflows().data}[workflow_id]

    return of
