"""Test helpers for code instrumented with drip: capture records in memory, strict mode on.

::

    import drip.testing

    def test_summarise_is_metered():
        with drip.testing.capture() as cap:
            with drip.run("summarise", customer_id="cus_1"):
                summarise("...")
        assert [e.meter for e in cap.events] == ["llm.tokens"]
        assert cap.quantity("llm.tokens") == 120

Inside ``capture()`` every record of every client (the default one and ``Drip(...)``
instances) is kept in memory instead of being sent, and call-time problems raise (strict
mode). Records are the exact ingest items that would have been sent, parsed into the wire
models (``drip.models.IngestEvent`` & co.), so a test also checks the wire format.

With pytest, use the ``drip_capture`` fixture: add ``pytest_plugins = ["drip.testing"]`` to
your ``conftest.py`` (or ``from drip.testing import drip_capture`` in it).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from pydantic import TypeAdapter

from ._config import resolve_settings
from ._recorder import ListLane, Recorder, overrides
from ._records import Clock, encode, unflatten
from .models import IngestEvent, IngestItem, IngestRunEnd, IngestRunStart, IngestUsage

__all__ = ["Capture", "capture", "drip_capture"]

_items = TypeAdapter(list[IngestItem])


class Capture:
    """What ``capture()`` collected. Properties are re-read on every access."""

    def __init__(self, strict: bool = True) -> None:
        settings = resolve_settings(
            api_key="sk_drip_testing_capture", base_url="http://127.0.0.1:9", strict=strict, env={}
        )
        self.instrumentation = Recorder(settings, on_error=self._on_error)
        #: the records as a lane keeps them (fast records flat: ``drip._records.unflatten``)
        self.records: list[Any] = []
        #: the hot path appends straight to our list: no buffer, no worker, nothing sent
        self.instrumentation.lane = ListLane(self.records)
        self.instrumentation.append = self.records.append
        #: call-time problems reported (in strict mode they were raised as well)
        self.errors: list[BaseException] = []

    def _on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)

    @property
    def items(self) -> list[dict[str, Any]]:
        """Every ingest item, in order, as the JSON the worker would send (camelCase)."""
        clock = Clock()
        return [json.loads(encode(rec, clock)) for rec in unflatten(list(self.records))]

    def _parsed(self) -> list[Any]:
        return _items.validate_python(self.items)

    @property
    def events(self) -> list[IngestEvent]:
        """Events recorded in runs (metered calls and ``run.event``)."""
        return [i for i in self._parsed() if isinstance(i, IngestEvent)]

    @property
    def usage(self) -> list[IngestUsage]:
        """Usage records (metered calls outside any run)."""
        return [i for i in self._parsed() if isinstance(i, IngestUsage)]

    @property
    def run_starts(self) -> list[IngestRunStart]:
        return [i for i in self._parsed() if isinstance(i, IngestRunStart)]

    @property
    def run_ends(self) -> list[IngestRunEnd]:
        return [i for i in self._parsed() if isinstance(i, IngestRunEnd)]

    def run_end(self, run_id: str) -> IngestRunEnd | None:
        """How the run ``run_id`` ended (None while it is open)."""
        return next((e for e in self.run_ends if e.run_id == run_id), None)

    def quantity(self, meter: str) -> float:
        """Total quantity recorded for ``meter`` (events and usage)."""
        events = sum(e.quantity or 0 for e in self.events if e.meter == meter)
        return events + sum(u.quantity for u in self.usage if u.usage_type == meter)

    def clear(self) -> None:
        self.records.clear()
        self.errors.clear()


@contextlib.contextmanager
def capture(*, strict: bool = True) -> Iterator[Capture]:
    """Capture every drip record inside the block (all clients), in memory; strict mode on."""
    cap = Capture(strict=strict)
    overrides.append(cap.instrumentation)
    try:
        yield cap
    finally:
        overrides.remove(cap.instrumentation)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture
    def drip_capture() -> Iterator[Capture]:
        """A ``Capture`` active for the whole test (strict mode)."""
        with capture() as cap:
            yield cap
