"""The ``events`` ingest item: it expands into exactly the items its ``event`` twins parse to
(keys, order, values), a bad one is rejected as a whole with a result per event and never
touches the rest of the batch, and the server stores and answers it event by event."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from drip import _records as records
from drip.models import IngestEventMeter, IngestEventRun, IngestEvents, IngestResult
from drip.server.ingest_columns import COLUMN_PARTS
from drip.server.ingest_parse import MAX_ITEMS, Rejected, parse_batch


def body(*items: str | dict[str, Any]) -> bytes:
    parts = [i if isinstance(i, str) else json.dumps(i) for i in items]
    return f'{{"items":[{",".join(parts)}]}}'.encode()


@pytest.mark.parametrize(
    ("part", "model"),
    [("events", IngestEvents), ("runs", IngestEventRun), ("meters", IngestEventMeter)],
)
def test_the_fast_schema_has_the_models_fields(part: str, model: Any) -> None:
    fields = TypeAdapter(COLUMN_PARTS[part]).core_schema["fields"]
    assert set(fields) == set(model.model_fields)
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert {name for name, field in fields.items() if field["required"]} == required | (
        {"type"} if part == "events" else set()
    )


def fast_records(n: int, seed: int, *, runs: int = 2, nested: bool = True) -> list[Any]:
    """``n`` fast records, flat, as the SDK's hot path makes them (mixed runs, meters, parents,
    spans, durations)."""
    rnd = random.Random(seed)
    meters = [
        records.MeterSpec("tokens", "llm.call", "tokens", {"model": "m", "n": [1, None]}),
        records.MeterSpec("calls", "tool", None, None),
    ]
    tails = [meters[0].fast_tail(812), meters[1].fast_tail(None), meters[1].fast_tail(2.5)]
    heads = [
        '"runId":"run_a"',
        '"runId":"run_b","correlationId":"0af7651916cd43dd8448eb211c80319c"',
    ]
    heads = heads[:runs]
    now = time.perf_counter_ns()
    flat: list[Any] = []
    for i in range(n):
        t0 = now + rnd.randrange(3 * 10**9)
        parent = rnd.choice([None, None, rnd.randrange(1, i + 2)]) if nested else None
        span = rnd.choice([None, rnd.getrandbits(64)]) if nested else None
        t1 = t0 + rnd.choice([0, 499, 500, 1_234_567, rnd.randrange(10**10)])
        flat += [records.FAST, rnd.choice(heads), rnd.choice(tails), parent, 7 + i, t0, t1, span]
    return flat


def plain_body(flat: list[Any], clock: records.Clock) -> bytes:
    width = records.WIDTH
    items = [
        records.encode_fast(tuple(flat[i : i + width]), clock) for i in range(0, len(flat), width)
    ]
    return body(*items)


@pytest.mark.parametrize(
    ("n", "seed", "runs", "nested"), [(1, 1, 1, False), (300, 2, 2, True), (5000, 3, 1, False)]
)
def test_an_events_item_parses_to_exactly_its_event_items(
    n: int, seed: int, runs: int, nested: bool
) -> None:
    flat = fast_records(n, seed, runs=runs, nested=nested)
    clock = records.Clock()
    plain, plain_fast = parse_batch(plain_body(flat, clock))
    columns, columns_fast = parse_batch(body(records.encode_columns(flat, clock)))
    assert plain_fast and columns_fast
    assert len(columns) == n
    for a, b in zip(plain, columns, strict=True):
        assert isinstance(a, dict) and isinstance(b, dict)
        assert list(a.items()) == list(b.items())  # keys in the same order, same values


@pytest.mark.parametrize("column", [3, 7])  # no parents, some spans; no spans, some parents
def test_one_optional_column_given_in_part(column: int) -> None:
    flat = fast_records(200, 6)
    flat[column :: records.WIDTH] = [None] * 200
    clock = records.Clock()
    plain, _ = parse_batch(plain_body(flat, clock))
    columns, _ = parse_batch(body(records.encode_columns(flat, clock)))
    assert [list(i.items()) for i in plain] == [list(i.items()) for i in columns]  # type: ignore[union-attr]


def test_events_items_keep_their_place_among_other_items() -> None:
    clock = records.Clock()
    flat = fast_records(6, 4)
    start = {"type": "run.start", "id": "run_a", "customerId": "c", "workflow": "w"}
    end = {"type": "run.end", "runId": "run_a", "status": "COMPLETED"}
    items, fast = parse_batch(
        body(
            start,
            records.encode_columns(flat[:24], clock),
            end,
            records.encode_columns(flat[24:], clock),
        )
    )
    assert fast
    assert [i["type"] for i in items] == ["run.start", *["event"] * 3, "run.end", *["event"] * 3]  # type: ignore[index]


def columns(**change: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "events", "idPrefix": "evt_p", "runs": [{"runId": "run_a"}],
        "meters": [{"eventType": "llm", "meter": "tokens", "quantity": 3}],
        "at": 1_700_000_000_000_000_000, "seq": [1, 2, 3], "t": [0, 5, 9], "d": [1, 2, 3],
    }  # fmt: skip
    item.update(change)
    return {k: v for k, v in item.items() if v is not None}


GOOD_EVENT = {"type": "event", "id": "evt_ok", "runId": "run_a", "eventType": "llm"}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"t": [0, 5]}, "t: 2 values for 3 events"),
        ({"d": [1, -2, 3]}, "d"),
        ({"seq": [1, 2, 1 << 40], "t": [0, 0, 0]}, "seq"),
        ({"run": [0, 1, 0]}, "run: an index beyond runs"),
        ({"runs": [{"runId": "run_a"}, {"runId": "run_b"}]}, "run: required"),
        ({"meters": [{"eventType": "llm", "quantity": -1}]}, "quantity"),
        ({"meters": [{"eventType": "llm", "metadata": {"a": "x" * 20_000}}]}, "metadata"),
        ({"span": [1, None, 1 << 64]}, "span"),
        ({"at": 1.5}, "at"),
        ({"t": ["0", "5", "9"]}, "t"),
        ({"idPrefix": " evt"}, "idPrefix"),
        ({"parent": [None, "x", None]}, "parent"),
    ],
)
def test_a_bad_events_item_is_rejected_whole_and_alone(change: dict[str, Any], says: str) -> None:
    items, _ = parse_batch(body(GOOD_EVENT, columns(**change), GOOD_EVENT))
    assert isinstance(items[0], dict) and isinstance(items[-1], dict)
    bad = items[1:-1]
    assert len(bad) == 3  # a result per event it holds
    for item in bad:
        assert isinstance(item, Rejected) and item.code == "VALIDATION_ERROR"
        assert "items[1]" in item.message and says in item.message, item.message


def test_text_that_cannot_be_stored_rejects_the_item_alone() -> None:
    raw = body(GOOD_EVENT, columns(runs=[{"runId": "run_\udcff"}]), GOOD_EVENT)
    items, fast = parse_batch(raw)
    assert not fast
    assert [type(i).__name__ for i in items] == ["dict", "Rejected", "Rejected", "Rejected", "dict"]
    assert all(i.code == "INVALID_TEXT" for i in items[1:4])  # type: ignore[union-attr]


def test_more_events_than_a_request_takes_is_413() -> None:
    from drip.server.errors import ApiError

    n = MAX_ITEMS + 1
    item = columns(seq=list(range(n)), t=[0] * n, d=[0] * n)
    for raw in (body(item), body(item, {"type": "teleport"})):  # the fast path and the slow one
        with pytest.raises(ApiError) as caught:
            parse_batch(raw)
        assert caught.value.status == 413


def test_the_server_stores_them_event_by_event(api: httpx.Client, customer_id: str) -> None:
    clock = records.Clock()
    flat = fast_records(50, 5, runs=1, nested=False)
    start = {"type": "run.start", "id": "run_a", "customerId": customer_id, "workflow": "w"}
    raw = body(start, records.encode_columns(flat, clock), columns(seq=[1, 2]), GOOD_EVENT)
    response = api.post("/ingest", content=raw, params={"results": "compact"})
    assert response.status_code == 200, response.text
    result = IngestResult.model_validate(response.json())
    assert result.columns is True
    assert result.statuses == "c" + "c" * 50 + "rr" + "c"
    # again: every event a duplicate, by the same ids
    again = IngestResult.model_validate(
        api.post("/ingest", content=raw, params={"results": "compact"}).json()
    )
    assert again.statuses == "d" * 51 + "rr" + "d"
    run = api.get("/runs/run_a").json()
    assert run["totals"]["eventCount"] == 51
    # the full answer stays as it was (no ``columns``): the published client's shape
    full = api.post("/ingest", content=raw).json()
    assert "columns" not in full and len(full["results"]) == 54


@pytest.mark.parametrize(
    ("n", "seed", "runs", "nested"), [(1, 7, 1, False), (300, 8, 2, True), (5000, 9, 1, False)]
)
def test_a_packed_events_item_parses_to_exactly_its_event_items(
    n: int, seed: int, runs: int, nested: bool
) -> None:
    flat = fast_records(n, seed, runs=runs, nested=nested)
    clock = records.Clock()
    plain, _ = parse_batch(plain_body(flat, clock))
    text = records.encode_columns(flat, clock, packed=True)
    assert '"packed":' in text and '"seq":' not in text
    packed, fast = parse_batch(body(text))
    assert fast and len(packed) == n
    for a, b in zip(plain, packed, strict=True):
        assert isinstance(a, dict) and isinstance(b, dict)
        assert list(a.items()) == list(b.items())


def test_packed_columns_round_trip_exactly() -> None:
    from drip.models import pack_columns, packed_count, unpack_columns

    rnd = random.Random(11)
    for n in (1, 2, 3, 17, 1000):
        seq = [rnd.choice([0, 1, (1 << 40) - 1, rnd.getrandbits(40)]) for _ in range(n)]
        starts = [
            rnd.choice([0, 2**62, -(2**63), 2**63 - 1, rnd.getrandbits(60)]) for _ in range(n)
        ]
        ends = [rnd.randrange(-(2**63), 2**63) for _ in range(n)]
        text = pack_columns(seq, starts, ends)
        assert packed_count(text) == n
        assert unpack_columns(text) == (seq, starts, ends)
    # sequence numbers are their low 40 bits (an id has 10 hex digits)
    assert unpack_columns(pack_columns([(1 << 40) + 5, -1], [0, 0], [0, 0]))[0] == [
        5,
        (1 << 40) - 1,
    ]
    for bad in ("", "AAAA", "!!!!" * 8, pack_columns([1], [2], [3])[:-4], "é" * 32):
        with pytest.raises(ValueError):
            unpack_columns(bad)


def packed(numbers: list[int], starts: list[int], ends: list[int], **change: Any) -> dict[str, Any]:
    from drip.models import pack_columns

    item = columns(seq=None, t=None, d=None, packed=pack_columns(numbers, starts, ends))
    item.update(change)
    return item


@pytest.mark.parametrize(
    ("item", "says"),
    [
        (packed([1, 2, 3], [0, 5, -1], [1, 6, 9]), "t value"),
        (packed([1, 2, 3], [0, 5, 9], [1, 4, 10]), "d value"),
        (packed([1, 2, 3], [0, 5, 10**18 + 1], [1, 6, 10**18 + 2]), "t value"),
        (packed([1, 2, 3], [0, 5, 9], [1, 6, 10], seq=[1, 2, 3]), "seq given too"),
        (columns(seq=None, t=None, d=None, packed="AAAA" * 25), "3 n"),
        (columns(seq=None, t=None, d=None, packed="!" * 96), "packed"),
        (columns(seq=[1, 2, 3], t=[0, 5, 9], d=None), "required"),
        (packed([1, 2, 3], [0, 5, 9], [1, 6, 10], run=[0, 1, 0]), "run: an index beyond runs"),
    ],
)
def test_a_bad_packed_item_is_rejected_whole_and_alone(item: dict[str, Any], says: str) -> None:
    items, _ = parse_batch(body(GOOD_EVENT, item, GOOD_EVENT))
    assert isinstance(items[0], dict) and isinstance(items[-1], dict)
    bad = items[1:-1]
    assert len(bad) == 3  # a result per event it holds
    for rejected in bad:
        assert isinstance(rejected, Rejected) and rejected.code == "VALIDATION_ERROR"
        assert "items[1]" in rejected.message and says in rejected.message, rejected.message


def test_a_packed_item_and_the_model_agree() -> None:
    good = packed([1, 2], [0, 5], [1, 6])
    model = IngestEvents.model_validate(good)
    assert model.packed == good["packed"] and model.seq is None
    for bad in (packed([1], [0], [1], seq=[1]), columns(t=None)):
        with pytest.raises(ValueError):
            IngestEvents.model_validate(bad)


def test_more_packed_events_than_a_request_takes_is_413() -> None:
    from drip.models import pack_columns
    from drip.server.errors import ApiError

    n = MAX_ITEMS + 1
    item = columns(seq=None, t=None, d=None, packed=pack_columns([1] * n, [0] * n, [0] * n))
    with pytest.raises(ApiError) as caught:
        parse_batch(body(item))
    assert caught.value.status == 413


def test_the_server_stores_packed_events_and_says_it_takes_them(
    api: httpx.Client, customer_id: str
) -> None:
    clock = records.Clock()
    flat = fast_records(40, 12, runs=1, nested=True)
    start = {"type": "run.start", "id": "run_a", "customerId": customer_id, "workflow": "w"}
    raw = body(start, records.encode_columns(flat, clock, packed=True))
    result = IngestResult.model_validate(
        api.post("/ingest", content=raw, params={"results": "compact"}).json()
    )
    assert result.columns is True and result.packed is True
    assert result.statuses == "c" * 41
    again = api.post("/ingest", content=raw, params={"results": "compact"}).json()
    assert again["statuses"] == "d" * 41  # the same ids
    assert api.get("/runs/run_a").json()["totals"]["eventCount"] == 40
    full = api.post("/ingest", content=raw).json()
    assert "packed" not in full  # the published client's answer stays as it was
