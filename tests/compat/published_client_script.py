"""Runs INSIDE a virtualenv that has the published drip-sdk 0.1.2 (not this repository).

Usage: python published_client_script.py BASE_URL SECRET_KEY
Exercises the published client against a live local server and prints one JSON object:
{"checks": [names of the checks that passed]}; any failure raises (non-zero exit).
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib.metadata import version

from drip.core import AsyncDrip as CoreAsyncDrip
from drip.core import Drip as CoreDrip

import drip
from drip import AsyncDrip, Drip, DripAPIError, DripAuthenticationError

base_url, key = sys.argv[1], sys.argv[2]
passed: list[str] = []


def check(name: str, condition: bool, detail: object = "") -> None:
    if not condition:
        raise AssertionError(f"{name}: {detail!r}")
    passed.append(name)


assert version("drip-sdk") == "0.1.2", version("drip-sdk")
assert "site-packages" in drip.__file__, drip.__file__  # the published package, not this repo

client = Drip(api_key=key, base_url=base_url, resilience=False)


def _no_fallback(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("record_run fell back to the 4-step path: /runs/record answered 404")


client._record_run_fallback = _no_fallback  # type: ignore[method-assign]

ping = client.ping()
check("ping", ping["ok"] is True and ping["status"] == "healthy", ping)

customer = client.create_customer(external_customer_id="compat-user", metadata={"plan": "pro"})
check(
    "create_customer",
    customer.id.startswith("cus_") and customer.external_customer_id == "compat-user",
)
try:
    client.create_customer(external_customer_id="compat-user")
    raise AssertionError("a duplicate externalCustomerId was accepted")
except DripAPIError as exc:
    body = exc.response_body or {}
    check(
        "409 existingCustomerId",
        exc.status_code == 409 and body.get("existingCustomerId") == customer.id,
        body,
    )
resolved = client.get_or_create_customer("compat-user")
check("get_or_create_customer", resolved.id == customer.id, resolved)
check("list_customers", customer.id in [c.id for c in client.list_customers(limit=10).data])

tracked = client.track_usage(
    customer_id=customer.id, meter="llm_tokens", quantity=842, metadata={"model": "m"}
)
check(
    "track_usage", tracked.success and tracked.usage_event_id and tracked.quantity == 842, tracked
)
queued = client.track_usage(customer_id=customer.id, meter="llm_tokens", quantity=8, mode="batch")
check("track_usage batch", queued.success and queued.idempotency_key, queued)

recorded = client.record_run(
    customer_id=customer.id,
    workflow="research-agent",
    events=[
        {"eventType": "llm.call", "quantity": 1700, "units": "tokens"},
        {"eventType": "tool.call", "quantity": 1},
    ],
    status="COMPLETED",
)
check(
    "record_run",
    recorded.events.created == 2 and recorded.run.status.value == "COMPLETED",
    recorded,
)
check("record_run summary", recorded.summary.endswith("2 events recorded (0ms)"), recorded.summary)

run = client.start_run(
    customer_id=customer.id, workflow_id="research-agent", correlation_id="corr-1"
)
check("start_run", run.status.value == "RUNNING" and run.correlation_id == "corr-1", run)
event = client.emit_event(
    run_id=run.id, event_type="llm.call", quantity=10, units="tokens", cost_units=0.5
)
check("emit_event", event.quantity == 10 and not event.is_duplicate, event)
batch = client.emit_events_batch(
    [
        {"runId": run.id, "eventType": "tool.call", "quantity": 1},
        {"runId": run.id, "eventType": "tool.call"},
    ]
)
check("emit_events_batch", batch.created == 2 and batch.duplicates == 0, batch)
ended = client.end_run(run.id, status="COMPLETED")
check(
    "end_run",
    ended.status.value == "COMPLETED" and ended.event_count == 3 and ended.ended_at,
    ended,
)
again = client.end_run(run.id, status="FAILED", error_message="late failure", error_code="E")
check("end_run again", again.status.value in ("COMPLETED", "FAILED"), again)

details = client.get_run(run.id)
check("get_run", details.totals.event_count == 3 and details.totals.total_quantity == "12", details)
timeline = client.get_run_timeline(run.id)
check(
    "get_run_timeline",
    [e.event_type for e in timeline.timeline] == ["llm.call", "tool.call", "tool.call"],
    timeline,
)
check("timeline quantities", [e.quantity for e in timeline.timeline] == [10, 1, 1], timeline)
check("timeline units", timeline.timeline[0].units == "tokens", timeline)

with client.run("context-flow", customer_id=customer.id) as ctx:
    ctx.event("step", quantity=2)
check("run() context manager", any(w.slug == "context-flow" for w in client.list_workflows().data))

charged = client.charge(customer_id=customer.id, meter="api_calls", quantity=3)
check(
    "charge",
    charged.success and not charged.is_duplicate and charged.charge.amount_usdc == "0.003000",
    charged,
)

try:
    Drip(api_key="sk_test_wrong_key_123", base_url=base_url, resilience=False).list_customers()
    raise AssertionError("a bad key was accepted")
except DripAuthenticationError as exc:
    check("401 bad key", exc.status_code == 401, exc)


async def async_clients() -> None:
    async with AsyncDrip(api_key=key, base_url=base_url, resilience=False) as aclient:
        other = await aclient.create_customer(external_customer_id="compat-async")
        arun = await aclient.start_run(customer_id=other.id, workflow_id="research-agent")
        await aclient.emit_event(run_id=arun.id, event_type="x", quantity=2)
        aended = await aclient.end_run(arun.id, status="COMPLETED")
        check("async client", aended.event_count == 1)
    core_async = CoreAsyncDrip(api_key=key, base_url=f"{base_url}/v1")
    core_timeline = await core_async.get_run_timeline(run.id)  # reads GET /runs/{id}
    check(
        "core async timeline",
        len(core_timeline.timeline) == 3 and core_timeline.summary == "3 events",
        core_timeline,
    )
    await core_async.close()


asyncio.run(async_clients())

core = CoreDrip(api_key=key, base_url=f"{base_url}/v1")
core_tl = core.get_run_timeline(run.id)
check("core timeline", [e.quantity for e in core_tl.timeline] == [10, 1, 1], core_tl)
core_run = core.record_run(
    customer_id=customer.id, workflow="research-agent", events=[{"eventType": "a"}], status="FAILED"
)
check("core record_run", core_run.events.created == 1, core_run)
core.close()
client.close()
print(json.dumps({"checks": passed}))
