"""Fixtures shared by the whole suite.

- ``live_server``: one real local Drip server per session (port 0, SQLite file in a tmp dir).
- ``account``: a fresh, isolated account on it for each test (``base_url``, ``secret_key``,
  ``public_key``), so tests never see each other's data.
- every test runs with no ``DRIP_*`` variable set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_drip_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DRIP_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from drip.server import start_server

    path = tmp_path_factory.mktemp("drip-server") / "drip.db"
    server = start_server(f"sqlite:///{path}", prices={"api_calls": "0.001"})
    yield server
    server.stop()


@dataclass(frozen=True)
class Account:
    """An account on the live server: its keys and the base URL (without ``/v1``)."""

    name: str
    base_url: str
    secret_key: str
    public_key: str


@pytest.fixture
def account(live_server: Any) -> Account:
    name = f"test-{uuid.uuid4().hex[:12]}"
    return Account(
        name=name,
        base_url=live_server.url,
        secret_key=live_server.create_key(name),
        public_key=live_server.create_key(name, public=True),
    )
