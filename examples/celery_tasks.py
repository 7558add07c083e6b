"""Meter Celery tasks: a task published inside a run runs in the worker as a child run of it, a
retried task stays one run, and a task published for a customer alone is that customer's run.

A real worker (in a thread here, ``celery -A ... worker`` in production) and an in-memory broker.

Run: DRIP_BASE_URL=local python examples/celery_tasks.py   (needs drip-sdk[server,celery])
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from celery import Celery
from celery.contrib.testing.worker import start_worker
from drip.integrations import celery as drip_celery

import drip

app = Celery("tasks", broker="memory://", backend="cache+memory://")
app.conf.update(task_default_retry_delay=0, worker_hijack_root_logger=False)
drip_celery.instrument(app)  # in the publisher and in the worker


@drip.metered(meter="rows_enriched", quantity=lambda rows: rows)
def enrich(batch: int) -> int:
    return 250


@app.task(name="tasks.enrich_batch")
def enrich_batch(batch: int) -> int:
    return enrich(batch)


@app.task(name="tasks.flaky_export", bind=True, max_retries=3)
def flaky_export(self: Any, batch: int) -> int:
    rows = enrich(batch)  # recorded on each try: every try did the work
    if self.request.retries < 2:
        raise self.retry(countdown=0)  # a retry stays in the same run
    return rows


def main() -> None:
    # what this execution records, read back below: the local database keeps earlier runs
    since = datetime.now(timezone.utc) - timedelta(milliseconds=1)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        with drip.run("nightly-import", external_customer_id="acme") as run:
            results = [enrich_batch.delay(b) for b in range(3)]
            retried = flaky_export.delay(99)
        with drip.customer(external_customer_id="globex"):  # no run open: its own run
            alone = enrich_batch.delay(7)
        print(f"rows: {sum(r.get(timeout=30) for r in results)}, retried task: "
              f"{retried.get(timeout=30)}, alone: {alone.get(timeout=30)}")  # fmt: skip
    print(drip.flush(timeout=10))
    runs = drip.drip.list_runs(customer_id="acme", limit=100, since=since).data
    children = sorted((r for r in runs if r.parent_run_id == run.id),
                      key=lambda r: r.workflow_name)  # fmt: skip
    print(f"'nightly-import' has {len(children)} child runs:")
    for child in children:
        events = drip.drip.get_run_timeline(child.id).events
        print(f"  {child.workflow_name} {child.status.value}, {len(events)} event(s)")
    [own] = drip.drip.list_runs(customer_id="globex", since=since).data
    print(f"globex: its own run {own.workflow_name!r}, parent {own.parent_run_id}")
    usage = drip.drip.get_usage_summary(customer_id="acme", since=since).total("rows_enriched")
    print(f"acme rows_enriched: {usage:g}")


if __name__ == "__main__":
    main()
