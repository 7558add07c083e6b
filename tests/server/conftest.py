"""HTTP clients for the server tests: plain httpx against the live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest


def _client(account: Any, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=f"{account.base_url}/v1", headers=headers, timeout=30)


@pytest.fixture
def api(account: Any) -> Iterator[httpx.Client]:
    """A client with the account's secret key."""
    with _client(account, account.secret_key) as client:
        yield client


@pytest.fixture
def public_api(account: Any) -> Iterator[httpx.Client]:
    """A client with the account's public key."""
    with _client(account, account.public_key) as client:
        yield client


@pytest.fixture
def customer_id(api: httpx.Client) -> str:
    response = api.post("/customers", json={"externalCustomerId": "user_123"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
