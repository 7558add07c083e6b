"""The ingest fast path: the fast schema agrees with the wire models, compact answers, the
multi-row insert (remainders, NULL columns, duplicates) and short and full event rows mixed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from pydantic.alias_generators import to_camel

from drip.models import IngestEvent, IngestResult, IngestRunEnd, IngestRunStart, IngestUsage
from drip.server.ingest_parse import FAST_ITEMS, Rejected, parse_batch

TS = "2025-03-01T10:00:00.000000Z"


def body(*items: Any) -> bytes:
    return json.dumps({"items": list(items)}).encode()


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("run.start", IngestRunStart),
        ("event", IngestEvent),
        ("usage", IngestUsage),
        ("run.end", IngestRunEnd),
    ],
)
def test_the_fast_schema_has_the_models_fields(kind: str, model: Any) -> None:
    fields = TypeAdapter(FAST_ITEMS[kind]).core_schema["fields"]
    assert set(fields) == set(model.model_fields)
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert {name for name, field in fields.items() if field["required"]} == required | {"type"}


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "event", "id": f"evt_{i}", "runId": "run_1", "eventType": "llm", **extra}


SAME_EITHER_WAY = [
    event(1),
    event(2, quantity=3, meter="tokens", timestamp=TS, durationMs=1.5, outcome="ok"),
    event(3, quantity=2.5, units="t", description="d", parentEventId="evt_1", spanId="ab"),
    event(4, metadata={"a": [1, {"b": None}]}, errorType="E", correlationId="c"),
    {"type": "event", "id": "evt_5", "run_id": "run_1", "event_type": "llm"},  # snake_case
    event(6, unknownKey=1),
    {"type": "usage", "id": "use_1", "customerId": "c", "usageType": "m", "quantity": 0},
    {"type": "run.start", "id": "run_1", "customerId": "c", "workflow": "w", "startedAt": TS},
    {"type": "run.end", "runId": "run_1", "status": "FAILED", "errorCode": "X", "endedAt": TS},
]


def slow(item: dict[str, Any]) -> dict[str, Any]:
    """What the models make of an item (a bad item next to it forces the slow path), less the
    fields the item did not give."""
    items, fast = parse_batch(body(item, {"type": "teleport"}))
    parsed = items[0]
    assert not fast and isinstance(parsed, dict)
    return {k: v for k, v in parsed.items() if k == "type" or k in item or to_camel(k) in item}


@pytest.mark.parametrize("item", SAME_EITHER_WAY)
def test_what_the_fast_schema_takes_the_models_read_the_same(item: dict[str, Any]) -> None:
    (parsed,), fast = parse_batch(body(item))
    assert fast and isinstance(parsed, dict)
    assert parsed == slow(item)


@pytest.mark.parametrize(
    "item",
    [
        event(1, id=" evt_space_first"),  # fine for the models, not for the fast schema
        event(2, eventType="é"),
        event(3, quantity="4"),  # a numeric string: the models convert it
        event(4, timestamp="2025-03-01T10:00:00Z"),  # not the wire format: converted later
        {"type": "run.end", "runId": "run_1", "status": "COMPLETED", "endedAt": "2025-03-01"},
    ],
)
def test_what_only_the_models_take_still_goes_through(item: dict[str, Any]) -> None:
    (parsed,), fast = parse_batch(body(item))
    assert not fast and isinstance(parsed, dict) and parsed["type"] == item["type"]


@pytest.mark.parametrize(
    "item",
    [
        event(1, id="   "),
        event(2, quantity=True),
        event(3, quantity=float("nan")),
        event(4, eventType="x" * 300),
        {"type": "run.end", "runId": "run_1", "status": "DONE"},
    ],
)
def test_what_neither_takes_is_rejected(item: dict[str, Any]) -> None:
    (parsed,), fast = parse_batch(body(item))
    assert not fast and isinstance(parsed, Rejected) and parsed.code == "VALIDATION_ERROR"


def test_metadata_is_checked_however_its_key_is_written() -> None:
    deep: Any = 1
    for _ in range(40):  # deeper than the metadata limit
        deep = {"a": deep}
    plain = body(event(1), event(2, metadata=deep))
    # the same key spelled with a JSON escape: the body's text never says "metadata"
    escaped = plain.replace(b'"metadata"', b'"\\u006detadata"')
    assert b'"metadata"' not in escaped
    for raw in (plain, escaped):
        (first, second), fast = parse_batch(raw)
        assert fast and isinstance(first, dict)
        assert isinstance(second, Rejected) and "nested deeper" in second.message


def ingest(api: httpx.Client, *items: Any, compact: bool = False) -> dict[str, Any]:
    params = {"results": "compact"} if compact else None
    response = api.post("/ingest", content=body(*items), params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    IngestResult.model_validate(result)
    return result


def run_start(run_id: str, customer_id: str) -> dict[str, Any]:
    return {"type": "run.start", "id": run_id, "customerId": customer_id, "workflow": "agent"}


def test_compact_answers(api: httpx.Client, customer_id: str) -> None:
    items = [
        run_start("run_k", customer_id),
        {**event(1), "runId": "run_k"},
        {**event(1), "runId": "run_k"},
        {**event(2), "runId": "run_nowhere"},
        {"type": "teleport", "id": "x"},
        {"type": "run.end", "runId": "run_k", "status": "COMPLETED"},
    ]
    compact = ingest(api, *items, compact=True)
    assert compact["statuses"] == "ccdrru"
    assert [(r["index"], r["id"], r["status"], r["code"]) for r in compact["results"]] == [
        (3, "evt_2", "rejected", "RUN_NOT_FOUND"),
        (4, "x", "rejected", "VALIDATION_ERROR"),
    ]
    assert (compact["created"], compact["duplicates"], compact["updated"]) == (2, 1, 1)
    assert compact["rejected"] == 2
    again = ingest(api, *items)  # the full answer, as it always was: no "statuses" key
    assert "statuses" not in again
    assert [r["status"] for r in again["results"]] == [
        "duplicate", "duplicate", "duplicate", "rejected", "rejected", "duplicate",
    ]  # fmt: skip


@pytest.mark.parametrize("count", [1, 99, 128, 129, 300, 2001])
def test_every_size_of_batch_goes_in_whole_and_in_order(
    api: httpx.Client, customer_id: str, count: int
) -> None:
    run_id = f"run_size_{count}"
    events = [
        {**event(i), "id": f"evt_{count}_{i:05d}", "runId": run_id, "quantity": 1, "outcome": "ok"}
        for i in range(count)
    ]
    result = ingest(api, run_start(run_id, customer_id), *events, compact=True)
    assert result["statuses"] == "c" * (count + 1)
    timeline = api.get(f"/runs/{run_id}/timeline").json()
    assert [e["id"] for e in timeline["events"]] == [e["id"] for e in events]
    again = ingest(api, *events[: count // 2 + 1], compact=True)
    assert again["statuses"] == "d" * (count // 2 + 1)


def test_short_and_full_rows_in_one_batch(api: httpx.Client, customer_id: str) -> None:
    common = {"meter": "llm", "quantity": 2, "timestamp": TS, "durationMs": 1.25, "outcome": "ok"}
    items = [
        run_start("run_mix", customer_id),
        {**event(1), "runId": "run_mix", **common},  # the SDK's usual shape: a short row
        {**event(2), "runId": "run_mix", **common, "parentEventId": "evt_1", "units": "tok"},
        {**event(3), "runId": "run_mix", **common, "outcome": None},  # explicit null
        {**event(4), "runId": "run_mix", "metadata": {"k": "v"}, "timestamp": TS},
        {**event(5), "runId": "run_mix", **common},
    ]
    assert ingest(api, *items, compact=True)["statuses"] == "cccccc"
    got = {e["id"]: e for e in api.get("/runs/run_mix/timeline").json()["events"]}
    assert list(got) == ["evt_1", "evt_2", "evt_3", "evt_4", "evt_5"]
    assert got["evt_1"]["parentEventId"] is None and got["evt_2"]["parentEventId"] == "evt_1"
    assert got["evt_2"]["units"] == "tok" and got["evt_1"]["units"] is None
    assert got["evt_3"]["outcome"] is None and got["evt_5"]["outcome"] == "ok"
    assert got["evt_4"]["metadata"]["k"] == "v" and got["evt_4"]["quantity"] == 1
    assert got["evt_1"]["durationMs"] == 1.25 and got["evt_1"]["timestamp"] == TS
