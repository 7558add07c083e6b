"""Runs INSIDE a virtualenv that has the published drip-sdk 0.1.2 (not this repository).

Usage: python published_public_key_script.py BASE_URL PUBLIC_KEY
The published client's public-key flows that the seed README names ("usage, customers,
billing"), plus runs and events, and the reads a public key is refused (403). Prints one JSON
object: {"checks": [names of the checks that passed]}; any failure raises.
"""

from __future__ import annotations

import json
import sys

import drip
from drip import Drip, DripAPIError

base_url, key = sys.argv[1], sys.argv[2]
passed: list[str] = []


def check(name: str, condition: bool, detail: object = "") -> None:
    if not condition:
        raise AssertionError(f"{name}: {detail!r}")
    passed.append(name)


assert "site-packages" in drip.__file__, drip.__file__  # the published package, not this repo
assert key.startswith("pk_"), key
client = Drip(api_key=key, base_url=base_url, resilience=False)

customer = client.create_customer(external_customer_id="pk-user")
check("create_customer", customer.id.startswith("cus_"), customer)
tracked = client.track_usage(customer_id=customer.id, meter="llm_tokens", quantity=5)
check("track_usage", tracked.success and tracked.usage_event_id, tracked)
queued = client.track_usage(customer_id=customer.id, meter="llm_tokens", quantity=1, mode="batch")
check("track_usage batch", queued.success, queued)
charged = client.charge(customer_id=customer.id, meter="api_calls", quantity=2)
check("charge", charged.success and not charged.is_duplicate, charged)

run = client.start_run(customer_id=customer.id, workflow_id="browser-agent")
event = client.emit_event(run_id=run.id, event_type="llm.call", quantity=3)
check("emit_event", not event.is_duplicate, event)
batch = client.emit_events_batch([{"runId": run.id, "eventType": "tool.call", "quantity": 1}])
check("emit_events_batch", batch.created == 1, batch)
ended = client.end_run(run.id, status="COMPLETED")
check("end_run (own run)", ended.status.value == "COMPLETED" and ended.event_count == 2, ended)
recorded = client.record_run(
    customer_id=customer.id,
    workflow="browser-agent",
    events=[{"eventType": "a"}],
    status="COMPLETED",
)
check("record_run", recorded.events.created == 1, recorded)
check("list_workflows", any(w.slug == "browser-agent" for w in client.list_workflows().data))
# run() on a workflow the server does not know yet: it lists the workflows, then POSTs the new
# one (needed a secret key: 403), starts the run and ends it COMPLETED, all with the public key
with client.run(workflow="pk-new-workflow", customer_id=customer.id) as ctx:
    ctx.event("step", quantity=2)
check("run() new workflow", any(w.slug == "pk-new-workflow" for w in client.list_workflows().data))
with client.run(workflow="pk-new-workflow", customer_id=customer.id) as again:
    pass
check("run() known workflow", again.run_id != ctx.run_id, (again.run_id, ctx.run_id))
try:
    with client.run(workflow="pk-failing", customer_id=customer.id) as failing:
        raise KeyError("boom")
except KeyError:
    check("run() failing body raises the caller's exception", True)

for name, read in (
    ("list_customers", lambda: client.list_customers()),
    ("get_customer", lambda: client.get_customer(customer.id)),
    ("get_run", lambda: client.get_run(run.id)),
    ("get_run_timeline", lambda: client.get_run_timeline(run.id)),
):
    try:
        read()
        raise AssertionError(f"{name} answered a public key")
    except DripAPIError as exc:
        check(f"{name} refused", exc.status_code == 403, exc)

client.close()
print(json.dumps({"checks": passed}))
