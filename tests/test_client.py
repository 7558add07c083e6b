"""Every client method against the real local server, for Drip and AsyncDrip alike."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drip import (
    AsyncDrip,
    Drip,
    DripAuthenticationError,
    DripBadRequestError,
    DripConflictError,
    DripNotFoundError,
    DripPermissionError,
    DripValidationError,
    RunStatus,
)


class Client:
    """Calls a Drip or AsyncDrip method the same way from an async test."""

    def __init__(self, inner: Drip | AsyncDrip) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


@pytest.fixture(params=["sync", "async"])
async def client(request: pytest.FixtureRequest, account: Any) -> AsyncIterator[Client]:
    if request.param == "sync":
        sync = Drip(api_key=account.secret_key, base_url=account.base_url)
        yield Client(sync)
        sync.close()
    else:
        async with AsyncDrip(api_key=account.secret_key, base_url=account.base_url) as inner:
            yield Client(inner)


async def test_ping(client: Client) -> None:
    result = await client.ping()
    assert result.ok is True and result.status == "healthy"
    assert isinstance(result.timestamp, int) and result.latency_ms >= 0


async def test_customers(client: Client) -> None:
    created = await client.create_customer(external_customer_id="u-1", metadata={"plan": "pro"})
    assert created.id and created.external_customer_id == "u-1" and not created.is_duplicate
    again = await client.create_customer(external_customer_id="u-1")
    assert again.id == created.id and again.is_duplicate
    assert (await client.get_customer(created.id)).metadata == {"plan": "pro"}
    listed = await client.list_customers(limit=10)
    assert created.id in [c.id for c in listed.data] and listed.count >= 1
    with pytest.raises(DripNotFoundError):
        await client.get_customer("cus_does_not_exist")


async def test_conflicting_identity_is_a_409(client: Client) -> None:
    await client.create_customer(external_customer_id="u-2", onchain_address="0xaaa")
    with pytest.raises(DripConflictError) as info:
        await client.create_customer(external_customer_id="u-2", onchain_address="0xbbb")
    assert info.value.existing_customer_id


async def test_create_customer_needs_an_identity(client: Client) -> None:
    with pytest.raises(DripValidationError):
        await client.create_customer()


async def test_track_usage_and_idempotency(client: Client) -> None:
    customer = await client.create_customer(external_customer_id="u-3")
    first = await client.track_usage(
        customer_id=customer.id, meter="api_calls", quantity=2, idempotency_key="k-1"
    )
    repeat = await client.track_usage(
        customer_id=customer.id, meter="api_calls", quantity=2, idempotency_key="k-1"
    )
    assert repeat.is_duplicate and repeat.usage_event_id == first.usage_event_id
    await client.track_usage(customer_id=customer.id, meter="api_calls", quantity=3)
    summary = await client.get_usage_summary(customer_id=customer.id)
    assert summary.total("api_calls") == 5


async def test_track_usage_unknown_customer(client: Client) -> None:
    with pytest.raises(DripBadRequestError):
        await client.track_usage(customer_id="cus_nobody", meter="api_calls", quantity=1)


@pytest.mark.parametrize(
    "quantity", [float("nan"), float("inf"), "3", True, None, -5, -0.5, 10**400, 1e16]
)
async def test_bad_quantity_is_refused_before_sending(client: Client, quantity: Any) -> None:
    with pytest.raises(DripValidationError) as info:
        await client.track_usage(customer_id="cus_1", meter="m", quantity=quantity)
    assert info.value.field == "quantity"


async def test_bad_metadata_and_meter(client: Client) -> None:
    with pytest.raises(DripValidationError, match="metadata"):
        await client.track_usage(customer_id="c", meter="m", quantity=1, metadata={"x": object()})
    with pytest.raises(DripValidationError, match="metadata"):
        await client.track_usage(
            customer_id="c", meter="m", quantity=1, metadata={"x": "y" * 20000}
        )
    with pytest.raises(DripValidationError, match="meter"):
        await client.track_usage(customer_id="c", meter=" ", quantity=1)


async def test_charge(client: Client) -> None:
    customer = await client.create_customer(external_customer_id="u-4")
    result = await client.charge(customer_id=customer.id, meter="api_calls", quantity=4)
    assert result.success and not result.is_duplicate
    assert result.charge.amount_usdc and result.charge.status.value
    summary = await client.get_usage_summary(customer_id=customer.id, meter="api_calls")
    assert summary.total("api_calls") == 4 and summary.meters[0].charges == 1


async def test_workflows(client: Client) -> None:
    made = await client.create_workflow(name="Research Agent", slug="research-agent")
    again = await client.create_workflow(name="Research Agent", slug="research-agent")
    assert made.id == again.id
    assert "research-agent" in [w.slug for w in (await client.list_workflows()).data]


async def test_run_lifecycle(client: Client) -> None:
    customer = await client.create_customer(external_customer_id="u-5")
    run = await client.start_run(
        customer_id=customer.id, workflow_id="research-agent", correlation_id="corr-1"
    )
    assert run.status == RunStatus.RUNNING and run.correlation_id == "corr-1"
    event = await client.emit_event(
        run_id=run.id, event_type="llm.call", quantity=1700, units="tokens"
    )
    assert event.quantity == 1700 and not event.is_duplicate
    batch = await client.emit_events_batch(
        [
            {"runId": run.id, "eventType": "tool.call", "quantity": 1},
            {
                "run_id": run.id,
                "event_type": "tool.call",
                "quantity": 1,
                "parent_event_id": event.id,
            },
        ]
    )
    assert batch.created == 2 and batch.duplicates == 0
    ended = await client.end_run(run.id, "COMPLETED")
    assert ended.status == RunStatus.COMPLETED and ended.event_count == 3
    details = await client.get_run(run.id)
    assert details.totals.event_count == 3 and float(details.totals.total_quantity) == 1702
    timeline = await client.get_run_timeline(run.id)
    assert [e.event_type for e in timeline.events] == ["llm.call", "tool.call", "tool.call"]
    assert timeline.events[2].parent_event_id == event.id
    assert timeline.status == RunStatus.COMPLETED


async def test_child_run(client: Client) -> None:
    customer = await client.create_customer(external_customer_id="u-6")
    parent = await client.start_run(customer_id=customer.id, workflow_id="a")
    child = await client.start_run(
        customer_id=customer.id, workflow_id="b", parent_run_id=parent.id
    )
    assert (await client.get_run(child.id)).parent_run_id == parent.id


async def test_record_run_with_placeholder_events(client: Client) -> None:
    customer = await client.create_customer(external_customer_id="u-7")
    result = await client.record_run(
        customer_id=customer.id,
        workflow="research-agent",
        events=[{"eventType": "llm.call", "quantity": 1700, "units": "tokens"}, ...],
        status="COMPLETED",
    )
    assert result.events.created == 1 and result.run.status == RunStatus.COMPLETED
    assert (await client.get_run(result.run.id)).totals.event_count == 1


async def test_emit_event_duplicate_key(client: Client) -> None:
    customer = await client.create_customer(external_customer_id="u-8")
    run = await client.start_run(customer_id=customer.id, workflow_id="w")
    a = await client.emit_event(run_id=run.id, event_type="x", quantity=1, idempotency_key="e1")
    b = await client.emit_event(run_id=run.id, event_type="x", quantity=1, idempotency_key="e1")
    assert b.is_duplicate and b.id == a.id


async def test_bad_key_is_401(account: Any) -> None:
    with (
        Drip(api_key="sk_test_not_a_real_key", base_url=account.base_url) as client,
        pytest.raises(DripAuthenticationError) as info,
    ):
        client.list_customers()
    assert info.value.status_code == 401


async def test_public_key_scope(account: Any) -> None:
    with Drip(api_key=account.public_key, base_url=account.base_url) as public:
        customer = public.create_customer(external_customer_id="pub-1")
        assert public.track_usage(customer_id=customer.id, meter="m", quantity=1).success
        with pytest.raises(DripPermissionError):
            public.get_usage_summary()


async def test_repeating_a_customer_with_a_new_address_completes_it(client: Client) -> None:
    first = await client.create_customer(external_customer_id="u-9")
    again = await client.create_customer(external_customer_id="u-9", onchain_address="0x1234...")
    assert again.id == first.id and again.is_duplicate and again.onchain_address == "0x1234..."
    assert (await client.get_customer(first.id)).onchain_address == "0x1234..."
    with pytest.raises(DripConflictError):
        await client.create_customer(external_customer_id="u-10", onchain_address="0x1234...")
