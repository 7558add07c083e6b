"""The read methods' parameters (usage windows and groupings, run filters and cursors) on Drip
and AsyncDrip against the real local server."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from drip import DripNotFoundError, DripValidationError, RunStatus

from .test_client import Client, client  # noqa: F401  (the fixture, sync and async)


async def test_usage_summary_window_and_groups(client: Client) -> None:  # noqa: F811
    customer = await client.create_customer(external_customer_id="reads-1")
    for quantity in (0.1, 0.2):
        await client.track_usage(
            customer_id=customer.id, meter="tokens", quantity=quantity, metadata={"model": "m1"}
        )
    today = datetime.now(timezone.utc).date()
    summary = await client.get_usage_summary(
        customer_id=customer.id, since=today, group_by=["model", "day"]
    )
    assert summary.since is not None and summary.since.startswith(today.isoformat())
    (tokens,) = summary.meters
    assert tokens.kind == "meter" and Decimal(tokens.quantity_decimal or "") == Decimal("0.3")
    (group,) = summary.groups
    assert group.model == "m1" and group.day == today.isoformat() and group.quantity == "0.3"
    later = await client.get_usage_summary(
        customer_id=customer.id, since=datetime(2999, 1, 1), until="3000-01-01T00:00:00Z"
    )
    assert later.meters == []
    with pytest.raises(DripValidationError) as info:
        await client.get_usage_summary(group_by="planet")
    assert info.value.field == "group_by"


async def test_list_runs_filters_and_cursor(client: Client) -> None:  # noqa: F811
    customer = await client.create_customer(external_customer_id="reads-2")
    made = []
    for i in range(5):
        run = await client.start_run(customer_id=customer.id, workflow_id=f"flow-{i % 2}")
        made.append(run.id)
    await client.end_run(made[0], status="COMPLETED")
    seen: list[str] = []
    page = await client.list_runs(customer_id=customer.id, limit=2)
    while True:
        seen += [r.id for r in page.data]
        assert all(r.started_at and r.event_count == 0 for r in page.data)
        if not page.has_more:
            break
        page = await client.list_runs(customer_id=customer.id, limit=2, cursor=page.next_cursor)
    assert sorted(seen) == sorted(made)
    done = await client.list_runs(customer_id=customer.id, status=RunStatus.COMPLETED)
    assert [r.id for r in done.data] == [made[0]] and done.data[0].duration_ms is not None
    flow = await client.list_runs(workflow="flow-1", since=date(2000, 1, 1))
    assert {r.id for r in flow.data} == {made[1], made[3]}
    with pytest.raises(DripValidationError):
        await client.list_runs(status="DONE")


def test_params_on_the_wire() -> None:
    from drip import _endpoints as _api

    spec = _api.get_usage_summary(
        "cus_1", "tokens", since=datetime(2026, 12, 1, 5), until="2026-12-02", group_by="meter,day"
    )
    assert spec.params == {
        "customerId": "cus_1",
        "meter": "tokens",
        "since": "2026-12-01T05:00:00+00:00",
        "until": "2026-12-02",
        "groupBy": "meter,day",
    }
    runs: Any = _api.list_runs(limit=3, status="FAILED", cursor="abc").params
    assert runs == {"limit": 3, "status": "FAILED", "cursor": "abc"}


async def test_reads_by_external_customer_id(client: Client) -> None:  # noqa: F811
    """``external_customer_id=`` on the reads that filter by customer, as on the writes; an id
    that could also be a ``cus_`` id is only ever taken as your own."""
    own = "cus_looks_like_drips"
    await client.track_usage(external_customer_id=own, meter="tokens", quantity=2)
    run = await client.start_run(external_customer_id=own, workflow_id="ext-reads")
    summary = await client.get_usage_summary(external_customer_id=own)
    assert summary.total("tokens") == 2 and summary.customer_id == run.customer_id
    runs = await client.list_runs(external_customer_id=own)
    assert [r.id for r in runs.data] == [run.id]
    with pytest.raises(DripNotFoundError):
        await client.get_usage_summary(external_customer_id=run.customer_id)
    with pytest.raises(DripNotFoundError):
        await client.list_runs(external_customer_id="nobody-at-all")


async def test_an_empty_filter_is_refused_not_read_as_everyone(client: Client) -> None:  # noqa: F811
    await client.track_usage(external_customer_id="someone", meter="tokens", quantity=1)
    for call, kwargs, field in (
        (client.get_usage_summary, {"customer_id": ""}, "customer_id"),
        (client.get_usage_summary, {"external_customer_id": ""}, "external_customer_id"),
        (client.get_usage_summary, {"meter": ""}, "meter"),
        (
            client.get_usage_summary,
            {"customer_id": "a", "external_customer_id": "a"},
            "customer_id",
        ),
        (client.list_runs, {"customer_id": ""}, "customer_id"),
        (client.list_runs, {"workflow": " "}, "workflow"),
    ):
        with pytest.raises(DripValidationError) as info:
            await call(**kwargs)
        assert info.value.field == field, kwargs
