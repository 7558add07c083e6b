"""Fixtures shared by the whole suite.

- ``live_server``: one real local Drip server per session (port 0), over a SQLite file in a tmp
  dir, or over a fresh database of the PostgreSQL server named by ``DRIP_TEST_DATABASE_URL``.
- ``database_url``: a fresh, empty database for one test (same rule).
- ``account``: a fresh, isolated account on it for each test (``base_url``, ``secret_key``,
  ``public_key``), so tests never see each other's data.
- every test runs with no ``DRIP_*`` variable set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: read once, before the autouse fixture below clears every ``DRIP_*`` variable
TEST_DATABASE_URL = os.environ.get("DRIP_TEST_DATABASE_URL") or None


@contextmanager
def fresh_database(directory: Path) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file in ``directory``, or a new database on
    the ``DRIP_TEST_DATABASE_URL`` server (dropped afterwards), so tests never share one."""
    if TEST_DATABASE_URL is None:
        yield f"sqlite:///{directory / 'drip.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from drip.server.storage.postgres import driver_url

    admin_url = driver_url(TEST_DATABASE_URL)
    name = f"drip_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for this test (see ``fresh_database``)."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture(autouse=True)
def _no_drip_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DRIP_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from drip.server import start_server

    with fresh_database(tmp_path_factory.mktemp("drip-server")) as url:
        server = start_server(url, prices={"api_calls": "0.001"})
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
