"""Fixtures for the integration tests: the default drip client on a fresh account.

``recorder`` configures drip's default client (strict, quick flushes) against the live local
server and gives a ``Recorder`` with a customer id and ``events(run_id)``, which flushes and
reads the run's timeline back from the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

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
