"""A real ``celery worker`` process with a prefork pool: tasks published in a run (here) become
child runs recorded by the pool's forked children, retries included, checked on the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("celery")

from celery import Celery
from drip.integrations import celery as drip_celery

import drip
from drip import Drip, RunStatus

pytestmark = pytest.mark.slow

TASKS = textwrap.dedent(
    """
    import os
    from celery import Celery
    import drip
    from drip.integrations import celery as drip_celery

    app = Celery("drip_prefork")
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": os.environ["QUEUE_DIR"],
            "data_folder_out": os.environ["QUEUE_DIR"],
        },
        result_backend="file://" + os.environ["RESULT_DIR"],
        task_default_retry_delay=0,
    )
    drip_celery.instrument(app)  # at import: before the pool forks

    @drip.metered("task.step")
    def step(n):
        return n

    @app.task(name="tasks.flaky", bind=True, max_retries=3)
    def flaky(self, n):
        step(n)
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return os.getpid()

    @app.task(name="tasks.add")
    def add(a, b):
        return [step(a) + step(b), os.getpid()]
    """
)


def _worker(account: Any, tmp_path: Path, flush_interval: str) -> Iterator[dict[str, str]]:
    """A ``celery worker`` with a prefork pool of 2; SIGTERM (a warm shutdown) at the end."""
    (tmp_path / "tasks_prefork.py").write_text(TASKS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    env.update(
        DRIP_API_KEY=account.secret_key,
        DRIP_BASE_URL=account.base_url,
        DRIP_FLUSH_INTERVAL=flush_interval,
        QUEUE_DIR=str(tmp_path / "queue"),
        RESULT_DIR=str(tmp_path / "results"),
        PYTHONPATH=str(tmp_path),
    )
    for name in ("queue", "results"):
        (tmp_path / name).mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks_prefork", "worker", "--pool=prefork",
         "--concurrency=2", "--without-heartbeat", "--without-mingle", "--without-gossip",
         "--loglevel=warning"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            assert proc.wait(60) == 0
        finally:
            assert proc.stderr is not None
            proc.stderr.close()


@pytest.fixture
def worker(account: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield from _worker(account, tmp_path, "0.05")


def publisher(env: dict[str, str]) -> Celery:
    app = Celery("drip_prefork")
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": env["QUEUE_DIR"], "data_folder_out": env["QUEUE_DIR"]
        },
        result_backend="file://" + env["RESULT_DIR"],
    )  # fmt: skip
    return app


def test_prefork_children_deliver_child_runs_and_retries_stay_in_one(
    worker: dict[str, str], live: Drip, customers: list[str]
) -> None:
    app = publisher(worker)
    drip_celery.instrument(app)
    try:
        with drip.run("batch", customer_id=customers[0]) as parent:
            flaky = app.send_task("tasks.flaky", args=[3])
            adds = [app.send_task("tasks.add", args=[i, 1]) for i in range(4)]
        pids = {flaky.get(timeout=120)} | {a.get(timeout=120)[1] for a in adds}
    finally:
        drip_celery.uninstrument(app)
    assert os.getpid() not in pids  # the tasks ran in the worker's pool processes
    assert live.flush(30).ok
    deadline = time.monotonic() + 60
    while True:  # the pool children send on their own schedule
        children = [r for r in live.list_runs(customer_id=customers[0]).data if r.parent_run_id]
        done = [r for r in children if r.status is RunStatus.COMPLETED]
        if len(done) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(children) == 5 and len(done) == 5, children
    assert {r.parent_run_id for r in children} == {parent.id}
    counts = sorted(live.get_run(r.id).totals.event_count for r in children)
    assert counts == [2, 2, 2, 2, 3]  # four adds; the flaky task's three executions, one run


def test_a_warm_shutdown_flushes_what_the_pool_processes_recorded(
    account: Any, tmp_path: Path, live: Drip, customers: list[str]
) -> None:
    # a flush interval no test waits for: the pool processes send only when they end, and
    # they end with os._exit (no atexit): worker_process_shutdown is the only way out
    stopping = _worker(account, tmp_path, "600")
    env = next(stopping)
    app = publisher(env)
    drip_celery.instrument(app)
    try:
        with drip.run("batch", customer_id=customers[1]) as parent:
            adds = [app.send_task("tasks.add", args=[i, 1]) for i in range(10)]
        pids = {a.get(timeout=120)[1] for a in adds}
    finally:
        drip_celery.uninstrument(app)
    assert os.getpid() not in pids
    assert live.flush(30).ok
    before = [r for r in live.list_runs(customer_id=customers[1]).data if r.parent_run_id]
    assert before == []  # nothing sent yet: the pool processes still hold every record
    with pytest.raises(StopIteration):
        next(stopping)  # SIGTERM: a warm shutdown, the worker exits 0
    children = [r for r in live.list_runs(customer_id=customers[1]).data if r.parent_run_id]
    assert len(children) == 10 and {r.parent_run_id for r in children} == {parent.id}
    assert all(r.status is RunStatus.COMPLETED for r in children), children
    assert sorted(live.get_run(r.id).totals.event_count for r in children) == [2] * 10
