"""Fixtures for the web integrations: the default client pointed at the real local server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import drip
from drip import Drip
from drip._default import reset_default_client


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
