"""The worker's ``events`` items: sent only once the server's answer says it takes them, the
same events (ids, order, counts) as ``event`` items, split when a batch is refused, and
counted right when read back from the spool.

The fake server here parses bodies with the real server's parser (``parse_batch``), so what it
counts is what ``drip serve`` would store; the fault suite (``tests/delivery``) runs the same
path against the real server.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drip import _records as records
from drip import instrument as drip
from drip._config import resolve_settings
from drip._delivery.sender import items_of
from drip.errors import DripAPIError
from drip.instrument import Instrumentation
from drip.models import IngestResult
from drip.server.ingest_parse import parse_batch


class ColumnServer:
    """Answers compactly, like ``drip serve``: a letter per event, and ``columns`` when
    ``columns`` is set; refuses (413) a body with more than ``most`` events."""

    def __init__(self, columns: bool = True, most: int | None = None, packed: bool = False) -> None:
        self.columns = columns
        self.packed = packed
        self.most = most
        self.bodies: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        self.lock = threading.Lock()

    def __call__(self, body: bytes) -> IngestResult:
        items, _ = parse_batch(body)
        if self.most is not None and len(items) > self.most:
            self.refused += 1
            raise DripAPIError("too many", status_code=413, code="TOO_MANY_ITEMS")
        with self.lock:
            self.bodies.append(body)
            self.events += [i for i in items if isinstance(i, dict) and i["type"] == "event"]
        answer: dict[str, Any] = {
            "results": [], "statuses": "c" * len(items), "created": len(items),
            "duplicates": 0, "updated": 0, "rejected": 0,
        }  # fmt: skip
        if self.columns:
            answer["columns"] = True
        if self.packed:
            answer["packed"] = True
        return IngestResult.model_validate(answer)

    def kinds(self) -> list[str]:
        return [i["type"] for b in self.bodies for i in json.loads(b)["items"]]


@pytest.fixture
def make() -> Iterator[Callable[..., Instrumentation]]:
    made: list[Instrumentation] = []

    def factory(server: ColumnServer, **options: Any) -> Instrumentation:
        options.setdefault("flush_interval", 0.05)
        settings = resolve_settings(
            api_key="sk_test_0000000", base_url="http://127.0.0.1:9", env={}, **options
        )
        instr = Instrumentation(settings, sender=server)
        made.append(instr)
        return instr

    yield factory
    for instr in made:
        instr.shutdown(2)


@drip.metered("m", units="u", metadata={"k": 1})
def work(i: int) -> int:
    return i


@drip.metered("n")
def outer(i: int) -> int:
    return work(i) + work(i)


def record(instr: Instrumentation, runs: int, calls: int) -> None:
    for _ in range(runs):
        with instr.run("wf", customer_id="cus_1"):
            for i in range(calls):
                outer(i)


def packed_items(server: ColumnServer) -> int:
    return sum(
        1 for b in server.bodies for i in json.loads(b)["items"] if "packed" in i and "seq" not in i
    )


@pytest.mark.parametrize(("columns", "packed"), [(True, True), (True, False), (False, False)])
def test_events_items_only_after_the_server_says_it_takes_them(
    make: Any, columns: bool, packed: bool
) -> None:
    server = ColumnServer(columns=columns, packed=packed)
    instr = make(server, max_batch_items=200)
    record(instr, 1, 10)
    assert instr.flush(10).ok
    assert "events" not in server.kinds()  # no answer yet when the first batch was made
    record(instr, 4, 100)
    report = instr.flush(10)
    assert report.ok and report.failed == 0
    assert ("events" in server.kinds()) is columns
    assert (packed_items(server) > 0) is packed
    # the same events either way: each call once, in recording order, nested ones named
    events = server.events
    assert len(events) == 3 * 410
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert {e["event_type"] for e in events} == {"m", "n"}
    children = [e for e in events if e["event_type"] == "m"]
    assert all(e["parent_event_id"] in set(ids) for e in children)
    assert all(e["units"] == "u" and e["metadata"] == {"k": 1} for e in children)
    stats = instr.stats()
    assert stats.sent == stats.recorded == 3 * 410 + 2 * 5 and stats.refused == 0


@pytest.mark.parametrize("packed", [False, True])
def test_a_refused_batch_is_split_through_its_events_items(make: Any, packed: bool) -> None:
    server = ColumnServer(most=50, packed=packed)
    instr = make(server, max_batch_items=1000, flush_interval=3600)
    record(instr, 1, 3)
    instr.flush(10)
    record(instr, 1, 300)  # 900 events in one batch: split down to bodies of <= 50
    report = instr.flush(10)
    assert report.ok and report.failed == 0
    assert server.refused > 0 and "events" in server.kinds()
    assert len(server.events) == 909 and len({e["id"] for e in server.events}) == 909
    assert instr.stats().refused == 0
    assert (packed_items(server) > 0) is packed


def test_a_backlog_goes_in_bigger_packed_batches(make: Any) -> None:
    server = ColumnServer(packed=True)
    settings = resolve_settings(
        api_key="sk_test_0000000", base_url="http://127.0.0.1:9", env={}, flush_interval=3600
    )
    assert (settings.max_batch_items, settings.packed_batch_items) == (5000, 20_000)
    given = resolve_settings(
        api_key="sk_test_0000000", base_url="http://127.0.0.1:9", env={}, max_batch_items=100
    )
    assert given.packed_batch_items == 100  # a limit the user gave holds for packed ones too
    instr = Instrumentation(dataclasses.replace(given, packed_batch_items=400), sender=server)
    record(instr, 1, 3)
    instr.flush(10)  # the answer says packed
    record(instr, 1, 500)  # 1,500 events and a run's start and end waiting
    assert instr.flush(10).ok
    sizes = [len(parse_batch(b)[0]) for b in server.bodies[1:]]
    assert sum(sizes) == 1502 and 100 < max(sizes) <= 400  # beyond max_batch_items
    assert len(server.events) == 1509 and len({e["id"] for e in server.events}) == 1509
    instr.shutdown(2)


@pytest.mark.parametrize("packed", [False, True])
def test_a_spooled_body_is_counted_by_events(packed: bool) -> None:
    clock = records.Clock()
    meter = records.MeterSpec("m", "m", None, None)
    flat: list[Any] = []
    for seq in range(1, 8):
        flat += [records.FAST, '"runId":"run_x"', meter.fast_tail(1), None, seq, 5, 9, None]
    start = '{"type":"run.start","id":"run_x","customerId":"c","workflow":"w"}'
    body = f'{{"items":[{start},{records.encode_columns(flat, clock, packed)}]}}'.encode()
    assert (b'"packed"' in body) is packed
    items, per_item, bad = items_of(body, None, None)  # type: ignore[misc]
    assert (len(items), per_item, bad) == (2, [1, 7], 0)
    halves = records.split_columns(items[1])
    assert [records.columns_count(h) for h in halves] == [3, 4]
    parsed, _ = parse_batch(b'{"items":[' + b",".join(halves) + b"]}")
    whole, _ = parse_batch(body)
    assert parsed == whole[1:]
