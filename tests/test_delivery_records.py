"""The buffer's record layout and the worker's slices (``drip._records``, ``drip._delivery``).

A metered call in a run keeps a *fast* record: ints, strings and None, flat in the buffer, so
the cyclic GC never has to look at it. The worker takes a batch's worth of the buffer in one
slice and puts back, in order, what a flush marker or the byte limit leaves for the next batch.
These tests drive ``worker._encode`` directly on a ``Delivery`` whose threads never start (the
buffer is filled with ``put``), so every count is exact.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drip import instrument as drip
from drip._config import resolve_settings
from drip._delivery import Delivery
from drip._delivery.buffer import Marker
from drip._delivery.worker import _encode
from drip._records import (
    FAST,
    REQUEST_END,
    REQUEST_EVENT,
    REQUEST_START,
    WIDTH,
    Clock,
    MeterSpec,
    request_parts,
    seq_run_id,
    unflatten,
)  # fmt: skip
from drip.instrument import Instrumentation
from drip.models import IngestResult

HEAD = '"runId":"run_0000000000000000000001"'
TAIL = MeterSpec("m", "m", None, None).fast_tail(1)


def _never(body: bytes) -> IngestResult:
    raise AssertionError("nothing is sent in these tests")


@pytest.fixture
def delivery() -> Iterator[Delivery]:
    settings = resolve_settings(
        api_key="sk_test_0000000", base_url="http://127.0.0.1:9", env={}, max_batch_bytes=1024
    )
    d = Delivery(settings, sender=_never)
    yield d
    # nothing was started: empty it, so the exit flush has nothing to do
    d.buffer.q.clear()
    d.buffer.markers = 0
    d.encoding, d.carry = [], None


def fast(seq: int) -> tuple[Any, ...]:
    t0 = time.perf_counter_ns()
    return (FAST, HEAD, TAIL, None, seq, t0, t0 + 1_000, None)


def _bad_encoder(rec: Any, clock: Any) -> str:
    raise ValueError("cannot be encoded")


def seqs_left(d: Delivery) -> list[int]:
    return [r[4] for r in unflatten(d.buffer.q) if r[0] is FAST]


def ids(body: bytes | None) -> list[str]:
    assert body is not None
    return [item["id"][-10:] for item in json.loads(body)["items"]]


def test_a_slice_stops_at_the_flush_marker_and_puts_the_rest_back_in_order(
    delivery: Delivery,
) -> None:
    for seq in (1, 2, 3):
        delivery.buffer.put(fast(seq))
    marker = delivery.buffer.push_marker()
    for seq in (4, 5):
        delivery.buffer.put(fast(seq))
    batch = _encode(delivery, Clock())
    assert batch.count == 3 and batch.marker is marker
    assert ids(batch.body) == [f"{s:010x}" for s in (1, 2, 3)]
    assert (delivery.buffer.markers, delivery.buffer.records(), seqs_left(delivery)) == (
        0,
        2,
        [4, 5],
    )
    assert len(delivery.encoding) == 3 * WIDTH and delivery._pending() == 5  # 3 taken + 2 left
    assert not [x for x in delivery.buffer.q if isinstance(x, Marker)]


def test_the_byte_limit_carries_one_record_and_puts_the_rest_back(delivery: Delivery) -> None:
    for seq in range(1, 21):
        delivery.buffer.put(fast(seq))
    sent: list[str] = []
    counts = []
    while delivery.buffer.q or delivery.carry:
        batch = _encode(delivery, Clock())
        assert batch.body is not None and len(batch.body) <= 1024
        counts.append(batch.count)
        sent += ids(batch.body)
        # what is not in a batch is pending: the carried record and the buffer
        assert delivery._pending() == 20 - sum(counts) + batch.count
        delivery.encoding = []  # handed over
    assert sent == [f"{s:010x}" for s in range(1, 21)] and len(counts) > 3


def test_a_record_that_cannot_be_encoded_leaves_the_slice_alone(delivery: Delivery) -> None:
    delivery.buffer.put(fast(1))
    delivery.buffer.put((_bad_encoder, "payload"))
    delivery.buffer.put(fast(2))
    batch = _encode(delivery, Clock())
    assert batch.count == 2 and ids(batch.body) == [f"{s:010x}" for s in (1, 2)]
    assert delivery.counters.refused == 1
    assert len(delivery.encoding) == 2 * WIDTH and delivery._pending() == 2
    assert not delivery.buffer.q


def test_unflatten_reads_flat_padded_and_bare_records() -> None:
    other = (_bad_encoder, "x")
    elements = [*fast(7), other, *(None,) * (WIDTH - 1), other, *fast(8)]
    got = list(unflatten(elements))
    assert [r if r is other else r[4] for r in got] == [7, other, other, 8]


def test_metered_calls_in_a_run_leave_nothing_for_the_gc_to_scan() -> None:
    settings = resolve_settings(
        api_key="sk_test_0000000", base_url="http://127.0.0.1:9", env={},
        flush_interval=3600, max_batch_items=100_000,
    )  # fmt: skip
    instr = Instrumentation(settings, sender=_never)

    @drip.metered("gc.m")
    def work(i: int) -> int:
        return i

    try:
        with instr.run("wf", customer_id="cus_1"):
            for i in range(1_000):
                work(i)
        elements = list(instr.delivery.buffer.q)
        assert len(elements) == 1_002 * WIDTH
        tracked = [x for x in elements if gc.is_tracked(x)]
        # the run start, the run's first call (the general path opens the fast one), the run end
        assert len(tracked) == 3
        assert [r[0] is FAST for r in unflatten(elements)].count(True) == 999
    finally:
        instr.delivery.buffer.q.clear()
        instr.shutdown(0)


def test_the_worker_encodes_a_request_run_into_its_three_items(delivery: Delivery) -> None:
    # a web request's run, flat: start, event, end (``drip._records``, "Request records")
    t0 = time.perf_counter_ns()
    parts = request_parts("GET /items/{id}", "api_calls", 1, "/items/{id}", "GET", False)
    delivery.buffer.put(fast(1))
    for rec in (
        (REQUEST_START, 7, "cus_1", parts, "req-1", None, t0, None),
        (REQUEST_EVENT, 7, parts, None, t0 + 2_000_000, 201, 1_500, None),
        (REQUEST_END, 7, "FAILED", "HTTPServerError", "HTTP 500", t0 + 2_000_000, None, None),
    ):
        delivery.buffer.put(rec)
    batch = _encode(delivery, Clock())
    assert batch.body is not None and batch.count == 4  # one fast record, three request items
    _, start, event, end = json.loads(batch.body)["items"]
    run_id = seq_run_id(7)
    assert start["type"] == "run.start" and start["id"] == run_id
    assert (start["customerId"], start["workflow"], start["externalRunId"]) == (
        "cus_1", "GET /items/{id}", "req-1")  # fmt: skip
    assert event["type"] == "event" and event["runId"] == run_id
    assert event["id"] == "evt_" + run_id[4:]  # the run's number: no other event has it
    assert (event["eventType"], event["quantity"]) == ("api_calls", 1)
    assert event["metadata"] == {"status_code": 201, "route": "/items/{id}", "method": "GET",
                                 "duration_ms": 1.5}  # fmt: skip
    assert end == {"type": "run.end", "runId": run_id, "status": "FAILED",
                   "errorCode": "HTTPServerError", "errorMessage": "HTTP 500",
                   "endedAt": event["timestamp"]}  # fmt: skip
    assert len(run_id) == len("run_") + 32


def _units_one_by_one(chunk: list[Any]) -> list[Any]:
    """What ``worker._units`` must give, the plain way: stretches of at least ``MIN_STRETCH``
    fast records as one unit, every other record alone."""
    from drip._delivery.worker import MIN_STRETCH, _records

    kinds = chunk[::WIDTH]
    units: list[Any] = []
    first = 0
    for at in [*(i for i, k in enumerate(kinds) if k is not FAST), len(kinds)]:
        if at - first >= MIN_STRETCH:
            units.append((first * WIDTH, at * WIDTH, None))
        elif at > first:
            units += _records(chunk, first * WIDTH, at * WIDTH)
        if at < len(kinds):
            units += _records(chunk, at * WIDTH, at * WIDTH + WIDTH)
        first = at + 1
    return units


def test_units_of_a_slice_match_the_plain_way() -> None:
    import random

    from drip._delivery.worker import _units

    rnd = random.Random(6)
    for _ in range(5000):
        share = rnd.random()
        chunk: list[Any] = []
        for i in range(rnd.randrange(0, 40)):
            if rnd.random() < share:
                chunk += (FAST, HEAD, TAIL, None, i, 1, 2, None)
            else:
                chunk += (rnd.choice([REQUEST_START, REQUEST_EVENT, REQUEST_END]), i, "x", None,
                          None, None, 5, None)  # fmt: skip
        assert _units(chunk) == _units_one_by_one(chunk)
