"""Celery with an in-memory broker and a real worker thread, checked on the real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("celery")

from celery import Celery
from celery.contrib.testing.worker import start_worker
from drip.integrations import celery as drip_celery

import drip
from drip import Drip, RunStatus


@drip.metered("task.step")
def step(n: int) -> int:
    return n


def make_app() -> Celery:
    app = Celery("drip_test", broker="memory://", backend="cache+memory://")
    app.conf.update(task_default_retry_delay=0, worker_hijack_root_logger=False)

    @app.task(name="tasks.add", shared=False)
    def add(a: int, b: int) -> int:
        return step(a) + step(b)

    @app.task(name="tasks.flaky", bind=True, max_retries=3, shared=False)
    def flaky(self: Any, n: int) -> int:
        step(n)
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return n

    @app.task(name="tasks.broken", shared=False)
    def broken() -> None:
        step(1)
        raise LookupError("no such row")

    return app


@pytest.fixture
def app(live: Drip) -> Iterator[Celery]:
    app = make_app()
    drip_celery.instrument(app)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield app
    finally:
        drip_celery.uninstrument(app)


def runs(live: Drip, customer: str) -> dict[str, Any]:
    assert live.flush(30).ok
    return {r.id: r for r in live.list_runs(customer_id=customer, limit=100).data}


def test_a_task_published_in_a_run_is_its_child_run(
    app: Celery, live: Drip, customers: list[str], slug: Callable[[str], str]
) -> None:
    with drip.run("import", customer_id=customers[0]) as parent:
        result = app.tasks["tasks.add"].delay(2, 3)
    assert result.get(timeout=30) == 5
    found = runs(live, customers[0])
    assert len(found) == 2
    [child] = [r for r in found.values() if r.id != parent.id]
    assert child.parent_run_id == parent.id and slug(child.workflow_id) == "tasks.add"
    assert child.status is RunStatus.COMPLETED
    steps = [e for e in live.get_run_timeline(child.id).events if e.meter == "task.step"]
    assert sorted(e.quantity for e in steps) == [1, 1]


def test_a_retried_task_is_one_child_run_with_each_event_once(
    app: Celery, live: Drip, customers: list[str]
) -> None:
    with drip.run("import", customer_id=customers[1]) as parent:
        result = app.tasks["tasks.flaky"].delay(7)
    assert result.get(timeout=30) == 7
    found = runs(live, customers[1])
    assert len(found) == 2  # the parent and one child, for three executions
    [child] = [r for r in found.values() if r.id != parent.id]
    assert child.parent_run_id == parent.id and child.status is RunStatus.COMPLETED
    events = live.get_run_timeline(child.id).events
    assert len(events) == 3 and len({e.id for e in events}) == 3  # one per execution


def test_a_failing_task_fails_its_run(app: Celery, live: Drip, customers: list[str]) -> None:
    with drip.run("import", customer_id=customers[2]):
        result = app.tasks["tasks.broken"].delay()
    with pytest.raises(LookupError):
        result.get(timeout=30)
    [child] = [r for r in runs(live, customers[2]).values() if r.parent_run_id]
    details = live.get_run(child.id)
    assert details.status is RunStatus.FAILED and details.error_code == "LookupError"


def test_customer_only_and_nothing(app: Celery, live: Drip, customers: list[str]) -> None:
    with drip.customer(customers[3]):
        assert app.tasks["tasks.add"].delay(1, 1).get(timeout=30) == 2
    assert app.tasks["tasks.add"].delay(1, 2).get(timeout=30) == 3  # no customer: unmetered
    [own] = runs(live, customers[3]).values()
    assert own.parent_run_id is None and own.status is RunStatus.COMPLETED
    assert live.get_run(own.id).totals.event_count == 2


def test_eager_tasks_are_child_runs_of_the_caller(live: Drip, customers: list[str]) -> None:
    app = make_app()
    app.conf.task_always_eager = True
    drip_celery.instrument(app)
    try:
        with drip.run("import", customer_id=customers[4]) as parent:
            assert app.tasks["tasks.add"].delay(4, 5).get() == 9
    finally:
        drip_celery.uninstrument(app)
    [child] = [r for r in runs(live, customers[4]).values() if r.id != parent.id]
    assert child.parent_run_id == parent.id
    assert live.get_run(child.id).totals.event_count == 2
