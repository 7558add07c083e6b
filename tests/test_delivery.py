"""Delivery: batching, retries, per-item results, bounded buffer, flush/shutdown, atexit, fork.

A fake sender stands in for ``POST /v1/ingest`` here, so each fault is exact and cheap; the
same paths against the real server (and a fault-injecting transport) are in
``test_instrument_live.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drip import instrument as drip
from drip._config import resolve_settings
from drip.errors import (
    DripDeliveryError,
    DripNetworkError,
    DripNotFoundError,
    DripRateLimitError,
    DripServerError,
)
from drip.instrument import Instrumentation
from drip.models import IngestResult

Behaviour = Callable[[list[dict[str, Any]]], Any]


class FakeIngest:
    """Answers like the server: ``created`` for each item, unless told otherwise."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.times: list[float] = []
        self.plan: list[BaseException | Behaviour] = []
        self.gate = threading.Event()
        self.gate.set()

    @property
    def items(self) -> list[dict[str, Any]]:
        """Items of the requests that were answered (not of failed attempts)."""
        return [i for b in self.bodies for i in json.loads(b)["items"]]

    def __call__(self, body: bytes) -> IngestResult:
        self.gate.wait(30)
        self.times.append(time.monotonic())
        items = json.loads(body)["items"]
        step = self.plan.pop(0) if self.plan else None
        if isinstance(step, BaseException):
            raise step
        statuses = step(items) if step is not None else ["created"] * len(items)
        self.bodies.append(body)
        return IngestResult.model_validate(
            {
                "results": [
                    {
                        "index": n,
                        "id": item.get("id") or item.get("runId"),
                        "status": status if isinstance(status, str) else status[0],
                        "code": None if isinstance(status, str) else status[1],
                        "message": None if isinstance(status, str) else status[2],
                    }
                    for n, (item, status) in enumerate(zip(items, statuses, strict=True))
                ],
                "created": 0, "duplicates": 0, "updated": 0, "rejected": 0,
            }
        )  # fmt: skip


@pytest.fixture
def fake() -> FakeIngest:
    return FakeIngest()


@pytest.fixture
def make(fake: FakeIngest) -> Iterator[Callable[..., Instrumentation]]:
    made: list[Instrumentation] = []
    errors: list[BaseException] = []

    def factory(**options: Any) -> Instrumentation:
        options.setdefault("flush_interval", 0.05)
        settings = resolve_settings(
            api_key="sk_test_0000000", base_url="http://127.0.0.1:9", env={}, **options
        )
        instr = Instrumentation(settings, on_error=errors.append, sender=fake)
        instr.errors = errors
        made.append(instr)
        return instr

    yield factory
    fake.gate.set()
    for instr in made:
        instr.shutdown(2)
    assert not [t for t in threading.enumerate() if t.name == "drip-delivery"]


@drip.metered("m")
def work(i: int) -> int:
    return i


def record(instr: Instrumentation, n: int, **run_options: Any) -> str:
    with instr.run("wf", customer_id="cus_1", **run_options) as run:
        for i in range(n):
            work(i)
    return run.id


def test_batches_by_count_in_order_one_request_per_batch(make: Any, fake: FakeIngest) -> None:
    instr = make(max_batch_items=10, flush_interval=10)
    run_id = record(instr, 35)
    report = instr.flush(10)
    assert (report.sent, report.failed, report.pending) == (37, 0, 0) and report.ok
    sizes = [len(json.loads(b)["items"]) for b in fake.bodies]
    assert sum(sizes) == 37 and max(sizes) == 10 and len(sizes) == 4
    items = fake.items
    assert items[0] == {**items[0], "type": "run.start", "id": run_id}
    assert items[-1]["type"] == "run.end" and items[-1]["status"] == "COMPLETED"
    ids = [i["id"] for i in items[1:-1]]
    assert ids == sorted(ids) and len(set(ids)) == 35  # recording order, no repeats
    stats = instr.stats()
    assert (stats.recorded, stats.sent, stats.batches, stats.pending) == (37, 37, 4, 0)


def test_batches_by_bytes(make: Any, fake: FakeIngest) -> None:
    instr = make(max_batch_bytes=1024, flush_interval=10)
    record(instr, 40)
    assert instr.flush(10).sent == 42
    assert len(fake.bodies) > 5 and all(len(b) <= 1024 for b in fake.bodies)
    assert len(fake.items) == 42


def test_worker_ships_by_itself_every_flush_interval(make: Any, fake: FakeIngest) -> None:
    instr = make(flush_interval=0.05)
    record(instr, 3)
    deadline = time.monotonic() + 5
    while len(fake.items) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fake.items) == 5  # without any flush()
    assert instr.stats().sent == 5


def test_retries_resend_the_same_bytes(make: Any, fake: FakeIngest) -> None:
    attempts: list[bytes] = []
    instr = make()
    fake.plan = [DripServerError("down", status_code=503), DripNetworkError("reset")]
    original = fake.__call__

    def spy(body: bytes) -> IngestResult:
        attempts.append(body)
        return original(body)

    instr.delivery._send = spy  # type: ignore[assignment]
    record(instr, 5)
    report = instr.flush(10)
    assert report.sent == 7 and report.failed == 0
    assert len(attempts) == 3 and attempts[0] == attempts[1] == attempts[2]
    assert instr.stats().retries == 2
    # one outage, one report (not one per attempt)
    [error] = instr.errors
    assert isinstance(error, DripDeliveryError) and error.code == "RETRYING"
    assert "down" in str(error)


def test_retry_after_is_honoured(make: Any, fake: FakeIngest) -> None:
    instr = make()
    fake.plan = [DripRateLimitError("slow down", retry_after=0.4, status_code=429)]
    record(instr, 1)
    assert instr.flush(10).sent == 3
    assert len(fake.times) == 2 and fake.times[1] - fake.times[0] >= 0.39


def test_duplicates_count_as_delivered(make: Any, fake: FakeIngest) -> None:
    instr = make()
    fake.plan = [lambda items: ["duplicate"] * len(items)]
    record(instr, 2)
    report = instr.flush(10)
    assert (report.sent, report.failed) == (4, 0)
    assert instr.stats().duplicates == 4 and instr.stats().sent == 0


def test_rejected_items_are_reported_once_never_retried(
    make: Any, fake: FakeIngest, caplog: pytest.LogCaptureFixture
) -> None:
    instr = make()

    def reject_events(items: list[dict[str, Any]]) -> Any:
        return [
            ("rejected", "RUN_NOT_FOUND", "no run") if i["type"] == "event" else "created"
            for i in items
        ]

    fake.plan = [reject_events]
    with caplog.at_level(logging.ERROR, logger="drip"):
        record(instr, 3)
        report = instr.flush(10)
    assert (report.sent, report.failed, report.pending) == (2, 3, 0)
    assert len(fake.bodies) == 1 and instr.stats().rejected == 3
    rejected = [e for e in instr.errors if isinstance(e, DripDeliveryError)]
    assert len(rejected) == 3 and {e.code for e in rejected} == {"RUN_NOT_FOUND"}
    assert all(e.item_id and e.item_id.startswith("evt_") for e in rejected)
    assert "rejected 3 of 5 records" in caplog.text


@pytest.mark.parametrize(
    "failure",
    [DripNotFoundError("no such route", status_code=404), ValueError("a bug in the sender")],
)
def test_a_refused_batch_is_reported_not_retried(
    make: Any, fake: FakeIngest, failure: Exception
) -> None:
    instr = make()
    fake.plan = [failure]
    record(instr, 2)
    report = instr.flush(10)
    assert (report.sent, report.failed, report.pending) == (0, 4, 0)
    assert instr.stats().refused == 4 and len(fake.times) == 1
    [error] = [e for e in instr.errors if isinstance(e, DripDeliveryError)]
    assert error.code == "REFUSED" and error.count == 4
    record(instr, 1)  # later batches still go
    assert instr.flush(10).sent == 3


def test_an_on_error_callback_that_flushes_does_not_stall_delivery(
    make: Any, fake: FakeIngest
) -> None:
    """``on_error`` runs on the sender thread for delivery problems; a ``flush()`` there waited
    for that very thread: delivery stood still for the whole timeout at each report (15 s for
    three rejected items)."""
    instr = make(shutdown_timeout=5)
    flushes: list[float] = []

    def on_error(exc: BaseException) -> None:
        start = time.monotonic()
        instr.flush()
        flushes.append(time.monotonic() - start)

    instr.delivery.reporter.on_error = on_error
    fake.plan = [lambda items: [("rejected", "X", "no") if i["type"] == "event" else "created"
                                for i in items]]  # fmt: skip
    record(instr, 3)
    start = time.monotonic()
    report = instr.flush(30)
    assert (report.sent, report.failed, report.pending) == (2, 3, 0)
    assert time.monotonic() - start < 3 and flushes and max(flushes) < 1


def test_an_on_error_callback_that_shuts_down_counts_each_record_once(
    make: Any, fake: FakeIngest
) -> None:
    """A ``shutdown()`` in ``on_error`` on the sender thread counted the batch being settled as
    undelivered too (recorded 1,026 of 513), and the sender then died on an empty outbox."""
    instr = make(shutdown_timeout=5)
    reports: list[Any] = []
    instr.delivery.reporter.on_error = lambda exc: reports.append(instr.shutdown())
    fake.plan = [lambda items: [("rejected", "X", "no") if i["type"] == "event" else "created"
                                for i in items]]  # fmt: skip
    failures: list[Any] = []
    hook, threading.excepthook = threading.excepthook, failures.append
    try:
        record(instr, 3)
        instr.flush(30)
        time.sleep(0.3)
    finally:
        threading.excepthook = hook
    stats = instr.stats()
    assert not failures and reports
    assert (stats.sent, stats.rejected, stats.undelivered, stats.recorded) == (2, 3, 0, 5)


def test_records_given_up_for_a_full_spool_say_so(
    make: Any, fake: FakeIngest, tmp_path: Path
) -> None:
    """Past the retry budget, records that did not fit the spool are reported undelivered: the
    report said 'there is no spool' to a user who had one, full."""
    instr = make(spool_dir=str(tmp_path), spool_max_bytes=1, max_retry_time=0.2)
    fake.plan = [DripNetworkError("refused")] * 1000
    record(instr, 3)
    assert instr.flush(10).failed == 5
    [error] = [e for e in instr.errors if getattr(e, "code", None) == "UNDELIVERED"]
    assert "the spool is full (spool_max_bytes=1)" in str(error), error


def test_buffer_full_waits_by_default_and_loses_nothing(make: Any, fake: FakeIngest) -> None:
    instr = make(max_buffer=10, max_batch_items=5)
    fake.gate.clear()  # the server hangs: the worker holds two batches, the buffer fills
    done = threading.Event()
    thread = threading.Thread(target=lambda: (record(instr, 40), done.set()))
    thread.start()
    time.sleep(0.3)
    assert not done.is_set()  # the caller waits for room (back-pressure), nothing dropped
    stats = instr.stats()
    assert stats.dropped == 0 and stats.blocked >= 1 and stats.pending <= 10 + 2 * 5 + 1
    fake.gate.set()
    thread.join(10)
    assert done.is_set()
    report = instr.flush(10)
    stats = instr.stats()
    assert (stats.sent, stats.dropped, stats.pending) == (42, 0, 0) and report.failed == 0
    types = [i["type"] for i in fake.items]
    assert types == ["run.start"] + ["event"] * 40 + ["run.end"]


def test_buffer_full_drops_newest_counts_logs_and_reports(
    make: Any, fake: FakeIngest, caplog: pytest.LogCaptureFixture
) -> None:
    instr = make(max_buffer=10, max_batch_items=5, overflow="drop")
    fake.gate.clear()  # the server hangs: the worker holds one batch, the buffer fills
    with caplog.at_level(logging.ERROR, logger="drip"):
        run_id = record(instr, 40)
        time.sleep(0.2)
        stats = instr.stats()
        assert stats.dropped > 0 and stats.pending <= 10 + 2 * 5 + 2
        drops = [e for e in instr.errors if isinstance(e, DripDeliveryError)]
        assert drops  # reported when it happens, not when the backlog drains
        fake.gate.set()
        report = instr.flush(10)
    stats = instr.stats()
    assert stats.dropped + stats.sent == 42 and report.sent == stats.sent
    assert fake.items[-1]["type"] == "run.end"  # a run's start and end are never dropped
    assert report.failed == 0  # the drops happened before this flush, not during it
    drops = [e for e in instr.errors if isinstance(e, DripDeliveryError)]
    assert {e.code for e in drops} == {"BUFFER_FULL"}
    assert sum(e.count for e in drops) == stats.dropped
    assert f"{drops[0].count} drip records were dropped" in caplog.text
    assert fake.items[0]["id"] == run_id  # the oldest are kept, in order


def test_flush_and_shutdown_are_bounded_and_report_pending(make: Any, fake: FakeIngest) -> None:
    instr = make()
    fake.plan = [DripNetworkError("refused")] * 1000
    record(instr, 3)
    started = time.monotonic()
    report = instr.flush(0.3)
    assert 0.25 <= time.monotonic() - started < 2
    assert (report.sent, report.pending) == (0, 5)
    started = time.monotonic()
    report = instr.shutdown(0.5)
    assert time.monotonic() - started < 2.5
    assert (report.sent, report.failed, report.pending) == (0, 5, 0)
    assert instr.stats().undelivered == 5
    undelivered = [e for e in instr.errors if getattr(e, "code", "") == "UNDELIVERED"]
    assert len(undelivered) == 1 and undelivered[0].count == 5


def test_records_after_shutdown_are_dropped_and_reported(make: Any, fake: FakeIngest) -> None:
    instr = make()
    record(instr, 1)
    assert instr.shutdown(5).sent == 3
    assert instr.shutdown(5) == instr.shutdown(5)  # idempotent
    record(instr, 1)
    assert instr.stats().dropped == 3
    closed = [e for e in instr.errors if getattr(e, "code", "") == "CLOSED"]
    assert closed and sum(e.count for e in closed) >= 1


async def test_aflush_does_not_block_the_loop(make: Any, fake: FakeIngest) -> None:
    instr = make(flush_interval=10)
    fake.gate.clear()
    record(instr, 2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick = asyncio.create_task(ticker())
    threading.Timer(0.2, fake.gate.set).start()
    report = await instr.aflush(5)
    tick.cancel()
    assert report.sent == 4 and ticks >= 5


def test_a_record_that_cannot_be_encoded_fails_alone(make: Any, fake: FakeIngest) -> None:
    instr = make()

    @drip.metered("nan.meta")
    def bad() -> None:
        drip.current_event().set_metadata(score=float("nan"))

    with instr.run("wf", customer_id="c"):
        bad()
        work(1)
    report = instr.flush(5)
    assert (report.sent, report.failed) == (3, 1)
    assert [i.get("meter") for i in fake.items] == [None, "m", None]
    [error] = [e for e in instr.errors if getattr(e, "code", "") == "ENCODE"]
    assert "event" in str(error)


def test_sixteen_threads_append_concurrently(make: Any, fake: FakeIngest) -> None:
    instr = make(max_batch_items=100)

    def worker() -> None:
        record(instr, 500)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = instr.flush(30)
    assert report.ok and instr.stats().sent == 16 * 502
    ids = [i.get("id") for i in fake.items if i["type"] == "event"]
    assert len(ids) == len(set(ids)) == 16 * 500


def _script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    prelude = """
        import json, os, sys, time
        from drip import instrument as drip
        from drip._config import resolve_settings
        from drip.instrument import Instrumentation
        from drip.models import IngestResult

        OUT = sys.argv[1]

        def sender(body):
            items = json.loads(body)["items"]
            with open(f"{OUT}/{os.getpid()}.jsonl", "a") as f:
                for item in items:
                    f.write(json.dumps(item) + "\\n")
            return IngestResult.model_validate({
                "results": [{"index": n, "id": i.get("id") or i.get("runId"),
                             "status": "created"} for n, i in enumerate(items)],
                "created": len(items), "duplicates": 0, "updated": 0, "rejected": 0})

        settings = resolve_settings(api_key="sk_test_0000000", base_url="http://127.0.0.1:9",
                                    flush_interval=30, env={})
        instr = Instrumentation(settings, sender=sender)

        @drip.metered("m")
        def work(i):
            return i
    """
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(prelude) + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _written(tmp_path: Path) -> dict[int, list[dict[str, Any]]]:
    return {
        int(p.stem): [json.loads(line) for line in p.read_text().splitlines()]
        for p in tmp_path.glob("*.jsonl")
    }


def test_atexit_flushes_what_is_buffered(tmp_path: Path) -> None:
    done = _script(
        tmp_path,
        """
        with instr.run("wf", customer_id="c"):
            for i in range(25):
                work(i)
        print(instr.stats().sent)  # nothing sent yet: flush_interval is 30 s
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    [items] = _written(tmp_path).values()
    assert len(items) == 27 and items[-1]["type"] == "run.end"


def test_fork_child_sends_only_its_own_records(tmp_path: Path) -> None:
    done = _script(
        tmp_path,
        """
        with instr.run("parent", customer_id="c"):
            for i in range(30):
                work(i)
        # 32 records are buffered (the worker runs, nothing was sent) when we fork
        pid = os.fork()
        if pid == 0:
            with instr.run("child", customer_id="c"):
                for i in range(7):
                    work(i)
            report = instr.flush(10)
            stats = instr.stats()
            print("child", report.sent, stats.recorded, stats.sent, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", instr.flush(10).sent, instr.stats().recorded, flush=True)
        """,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    # the child also re-sends the start of the parent's run, not acknowledged at the fork
    # (the server de-duplicates it): see test_fork_inside_an_open_run
    assert lines == {"child": "10 10 10", "parent": "32 32"}
    written = _written(tmp_path)
    assert len(written) == 2
    child, parent = sorted(written.values(), key=len)
    assert len(child) == 10 and len(parent) == 32
    assert child[0]["id"] == parent[0]["id"] and child[0]["workflow"] == "parent"
    child = child[1:]
    assert {i["workflow"] for i in child + parent if i["type"] == "run.start"} == {
        "parent",
        "child",
    }
    child_ids = {i.get("id") for i in child} - {None}
    parent_ids = {i.get("id") for i in parent} - {None}
    assert not child_ids & parent_ids  # nothing re-sent, and fresh ids in the child


def test_multiprocessing_child_flushes_before_its_os_exit(tmp_path: Path) -> None:
    done = _script(
        tmp_path,
        """
        import multiprocessing

        def child():
            with instr.run("mp-child", customer_id="c"):
                for i in range(5):
                    work(i)
            # no flush: the child ends with os._exit, which skips atexit

        if __name__ == "__main__":
            p = multiprocessing.get_context("fork").Process(target=child)
            p.start()
            p.join()
            print(p.exitcode)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    [items] = _written(tmp_path).values()
    assert [i["type"] for i in items] == ["run.start"] + ["event"] * 5 + ["run.end"]


def test_worker_is_one_daemon_thread_per_client(make: Any, fake: FakeIngest) -> None:
    instr = make()
    assert not instr.delivery.started()  # nothing recorded, no thread
    record(instr, 3)
    record(instr, 3)
    workers = [t for t in threading.enumerate() if t.name == "drip-delivery"]
    assert len(workers) == 1 and workers[0].daemon
    instr.shutdown(5)
    assert not workers[0].is_alive()


def test_main_thread_pid_is_recorded(make: Any) -> None:
    instr = make()
    assert instr.delivery.pid == os.getpid()


def test_batches_overlap_but_go_out_one_at_a_time_in_order(make: Any, fake: FakeIngest) -> None:
    threads: list[str] = []
    in_flight: list[int] = [0]
    most: list[int] = [0]
    original = fake.__call__

    def spy(body: bytes) -> IngestResult:
        threads.append(threading.current_thread().name)
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.002)
            return original(body)
        finally:
            in_flight[0] -= 1

    instr = make(max_batch_items=10, flush_interval=10)
    instr.delivery._send = spy  # type: ignore[assignment]
    fake.plan = [lambda items: ["created"] * len(items)] * 3 + [DripNetworkError("reset")]
    run_id = record(instr, 200)
    report = instr.flush(20)
    assert (report.sent, report.failed, report.pending) == (202, 0, 0)
    assert most[0] == 1  # never two requests at once
    assert "drip-delivery-sender" in threads  # the next batch went out from the sender thread
    items = fake.items
    assert [i["type"] for i in (items[0], items[-1])] == ["run.start", "run.end"]
    assert items[0]["id"] == run_id
    ids = [i["id"] for i in items[1:-1]]
    assert ids == sorted(ids) and len(set(ids)) == 200  # in order, once each, despite the retry
    assert instr.stats().retries == 1 and instr.stats().batches == len(fake.bodies) == 21


def test_a_refused_batch_in_the_pipeline_does_not_stop_the_ones_after_it(
    make: Any, fake: FakeIngest
) -> None:
    instr = make(max_batch_items=10, flush_interval=10)
    fake.plan = [lambda items: ["created"] * len(items)] * 2
    fake.plan += [DripNotFoundError("no such route", status_code=404)]
    record(instr, 100)
    report = instr.flush(20)
    assert (report.sent, report.failed, report.pending) == (92, 10, 0)
    assert len(fake.bodies) == 10 and instr.stats().refused == 10


def test_compact_answers_are_counted(make: Any) -> None:
    def compact(body: bytes) -> IngestResult:
        items = json.loads(body)["items"]
        letters = "".join("r" if n == 1 else "d" if n == 2 else "c" for n in range(len(items)))
        return IngestResult.model_validate(
            {
                "results": [
                    {"index": 1, "id": items[1].get("id"), "status": "rejected",
                     "code": "RUN_NOT_FOUND", "message": "no run"},
                ],
                "statuses": letters,
                "created": 0, "duplicates": 0, "updated": 0, "rejected": 0,
            }
        )  # fmt: skip

    instr = make()
    instr.delivery._send = compact  # type: ignore[assignment]
    record(instr, 3)
    report = instr.flush(10)
    assert (report.sent, report.failed, report.pending) == (4, 1, 0)
    stats = instr.stats()
    assert (stats.sent, stats.duplicates, stats.rejected) == (3, 1, 1)
    assert [e.code for e in instr.errors if isinstance(e, DripDeliveryError)] == ["RUN_NOT_FOUND"]
