"""The instrumentation end to end: records shipped by the real worker into the real server.

Everything here is checked on the server (run details, timelines, usage summaries), including
under faults: a transport in front of the server that answers 503, rate-limits, and drops
connections after the server has committed a batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from drip import Drip, RunStatus
from drip import instrument as drip
from drip._default import configure, reset_default_client
from drip._transport import IngestSender
from drip.errors import DripDeliveryError, DripNetworkError, DripRateLimitError, DripServerError
from drip.instrument import Instrumentation

pytestmark = pytest.mark.slow


@pytest.fixture
def client(account: Any) -> Iterator[Drip]:
    with Drip(api_key=account.secret_key, base_url=account.base_url, flush_interval=0.1) as c:
        yield c


@pytest.fixture
def customer(client: Drip) -> str:
    return client.create_customer(external_customer_id="user_live").id


@drip.metered("llm.tokens", quantity=lambda r: r, units="tokens")
def llm(n: int) -> int:
    tool()
    return n


@drip.metered("tool.calls")
def tool() -> None:
    pass


@drip.metered("stream.chunks")
def stream(n: int) -> Iterator[int]:
    for i in range(n):
        drip.current_event().add(1)
        tool()
        yield i


@drip.metered("task.step")
async def step(task: int) -> None:
    drip.current_event().set_metadata(task=task)
    await asyncio.sleep(0)


def test_runs_events_and_usage_on_the_server(client: Drip, customer: str) -> None:
    with client.run("research", customer_id=customer, external_run_id="ext-1") as run:
        llm(120)
        assert list(stream(3)) == [0, 1, 2]
        note = run.event("note", 2, description="checkpoint")
        with drip.run("summarise") as child:
            llm(30)
    with pytest.raises(LookupError), client.run("failing", customer_id=customer) as failed:
        llm(5)
        raise LookupError("no such document")
    with drip.customer(customer):
        client.metered("tool.calls")(lambda: None)()  # no run: a usage record of this client
    report = client.flush(30)
    assert report.ok and report.sent == 18, report  # 3 runs (start + end), 11 events, 1 usage

    details = client.get_run(run.id)
    assert details.status is RunStatus.COMPLETED and details.external_run_id == "ext-1"
    timeline = client.get_run_timeline(run.id)
    events = {e.id: e for e in timeline.events}
    assert len(events) == 7 and note in events
    llm_event = next(e for e in events.values() if e.meter == "llm.tokens")
    assert (llm_event.quantity, llm_event.units, llm_event.outcome) == (120, "tokens", "ok")
    assert llm_event.duration_ms is not None
    chunks = next(e for e in events.values() if e.meter == "stream.chunks")
    assert chunks.quantity == 3
    tools = [e for e in events.values() if e.meter == "tool.calls"]
    assert sorted(events[t.parent_event_id or ""].meter or "" for t in tools) == [
        "llm.tokens", "stream.chunks", "stream.chunks", "stream.chunks",
    ]  # fmt: skip

    child_details = client.get_run(child.id)
    assert child_details.parent_run_id == run.id and child_details.customer_id == customer
    assert child_details.totals.event_count == 2

    failed_details = client.get_run(failed.id)
    assert failed_details.status is RunStatus.FAILED
    assert failed_details.error_code == "LookupError"
    assert "no such document" in (failed_details.error_message or "")

    summary = client.get_usage_summary(customer_id=customer, meter="tool.calls")
    [meter] = summary.meters
    assert (meter.usage_records, meter.run_events) == (1, 6)


async def test_1000_tasks_and_16_threads_each_in_their_own_run(client: Drip, customer: str) -> None:
    async def agent(i: int) -> str:
        async with client.run("agent", customer_id=customer) as run:
            for _ in range(3):
                await step(i)
                await asyncio.sleep(0.001 * (i % 7))
            return run.id

    task_runs = await asyncio.gather(*(agent(i) for i in range(1000)))

    @drip.metered("thread.step")
    def thread_step(t: int) -> None:
        drip.current_event().set_metadata(task=t)

    thread_runs: dict[int, str] = {}

    def worker(t: int) -> None:
        with client.run("worker", customer_id=customer) as run:
            thread_runs[t] = run.id
            for _ in range(50):
                thread_step(1000 + t)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = await client._recorder.aflush(60)
    assert report.ok, report
    expected = {run_id: (i, 3) for i, run_id in enumerate(task_runs)}
    expected.update({run_id: (1000 + t, 50) for t, run_id in thread_runs.items()})
    assert len(expected) == 1016

    def check(item: tuple[str, tuple[int, int]]) -> list[str]:
        run_id, (task, count) = item
        timeline = client.get_run_timeline(run_id)
        tasks = [(e.metadata or {}).get("task") for e in timeline.events]
        ok = timeline.status is RunStatus.COMPLETED and tasks == [task] * count
        return [] if ok else [f"{run_id}: {timeline.status} {tasks}"]

    with ThreadPoolExecutor(8) as pool:
        wrong = [w for ws in pool.map(check, expected.items()) for w in ws]
    assert wrong == []


def test_otel_ids_reach_the_server_timeline(client: Drip, customer: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("live")
    with (
        tracer.start_as_current_span("request"),
        client.run("traced", customer_id=customer) as r,
        tracer.start_as_current_span("llm"),
    ):
        llm(1)
    assert client.flush(30).ok
    spans = {s.name: s.context for s in exporter.get_finished_spans()}
    provider.shutdown()
    timeline = client.get_run_timeline(r.id)
    assert timeline.correlation_id == f"{spans['request'].trace_id:032x}"
    by_meter = {e.meter: e for e in timeline.events}
    assert by_meter["llm.tokens"].span_id == f"{spans['llm'].span_id:016x}"
    assert by_meter["llm.tokens"].correlation_id == timeline.correlation_id


def test_rejections_from_the_server_are_reported(account: Any) -> None:
    errors: list[BaseException] = []
    with Drip(account.secret_key, account.base_url, on_error=errors.append) as client:
        with client.run("wf", customer_id="cus_does_not_exist"):
            tool()
        report = client.flush(30)
        assert (report.sent, report.failed, report.pending) == (0, 3, 0)
        codes = sorted(e.code for e in errors if isinstance(e, DripDeliveryError))
        assert codes == ["CUSTOMER_NOT_FOUND", "RUN_NOT_FOUND", "RUN_NOT_FOUND"]
        assert client.stats().rejected == 3


def test_module_level_functions_use_the_default_client(account: Any) -> None:
    default = configure(api_key=account.secret_key, base_url=account.base_url)
    try:
        cid = default.create_customer(external_customer_id="default_user").id
        with drip.run("default-wf", customer_id=cid) as run:
            tool()
        assert drip.flush(30).sent == 3
        assert drip.stats().sent == 3
        assert default.get_run(run.id).totals.event_count == 1
        assert drip.shutdown(5).pending == 0
    finally:
        reset_default_client()


async def test_aflush_of_an_async_client_and_of_drip_wait_without_blocking_the_loop(
    account: Any,
) -> None:
    """``await client.aflush()`` / ``await drip.aflush()``: an async application's flush (the
    synchronous ``flush`` would stop its event loop while the worker sends)."""
    from drip import AsyncDrip

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    async with AsyncDrip(account.secret_key, account.base_url, flush_interval=60) as client:
        cid = (await client.create_customer(external_customer_id="aflush_user")).id
        with client.run("aflush-wf", customer_id=cid) as run:
            for _ in range(2_000):
                tool()
        tick = asyncio.create_task(ticker())
        report = await client.aflush(60)
        tick.cancel()
        assert report.ok and report.sent == 2_002, report  # run start, 2,000 events, end
        assert ticks > 0  # the loop ran while the batch was sent
        assert (await client.get_run(run.id)).totals.event_count == 2_000
    configure(api_key=account.secret_key, base_url=account.base_url, flush_interval=60)
    try:
        with drip.run("aflush-default", customer_id=cid):
            tool()
        assert (await drip.aflush(30)).sent == 3
    finally:
        reset_default_client()


def test_fork_child_records_its_own_and_resends_only_the_parents_unsent_run_start(
    account: Any, client: Drip, customer: str
) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from drip import Drip
        from drip import instrument as drip

        @drip.metered("forked")
        def work():
            pass

        client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=30)
        with client.run("parent", customer_id=os.environ["CUSTOMER"]) as run:
            for _ in range(40):
                work()
        pid = os.fork()
        if pid == 0:
            with client.run("child", customer_id=os.environ["CUSTOMER"]) as child:
                for _ in range(10):
                    work()
            report = client.flush(30)
            stats = client.stats()
            print("child", child.id, report.sent, stats.recorded, stats.duplicates, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        report = client.flush(30)
        stats = client.stats()
        print("parent", run.id, report.sent, stats.recorded, stats.duplicates, flush=True)
        """
    )
    env = {
        **os.environ,
        "KEY": account.secret_key,
        "URL": account.base_url,
        "CUSTOMER": customer,
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    child_id, *child_counts = rows["child"]
    parent_id, *parent_counts = rows["parent"]
    # the child's run start, 10 events, run end, plus the start of the parent's run, which
    # was not acknowledged at the fork: the child re-sends it and the server stores it once
    # (whichever process comes second gets ``duplicate``)
    assert child_counts[:2] == ["13", "13"] and parent_counts[:2] == ["42", "42"]
    assert int(child_counts[2]) + int(parent_counts[2]) == 1
    assert client.get_run(parent_id).totals.event_count == 40
    assert client.get_run(child_id).totals.event_count == 10
    assert client.get_usage_summary(customer_id=customer, meter="forked").total("forked") == 50


class FaultyTransport(httpx.BaseTransport):
    """In front of the real server: 503s, a 429, and connections dropped mid-batch.

    ``drop`` forwards the batch (the server commits it) and then fails as if the connection
    broke before the answer arrived, so the worker's retry is a real duplicate.
    """

    def __init__(self, plan: list[str]) -> None:
        self.inner = httpx.HTTPTransport()
        self.plan = plan
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        action = self.plan.pop(0) if self.plan else "pass"
        self.seen.append(action)
        if action == "503":
            return httpx.Response(503, json={"error": "unavailable"})
        if action == "429":
            return httpx.Response(429, headers={"Retry-After": "0.2"}, json={"error": "slow"})
        response = self.inner.handle_request(request)
        if action == "drop":
            response.read()
            response.close()
            raise httpx.RemoteProtocolError("connection dropped mid-batch", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_faults_every_record_lands_exactly_once(client: Drip, customer: str) -> None:
    plan = ["503", "503", "pass", "drop", "pass", "503", "drop", "429", "pass", "drop"]
    transport = FaultyTransport(list(plan) * 3)
    settings = client.settings
    sender = IngestSender(settings, transport=transport)
    errors: list[BaseException] = []
    instr = Instrumentation(
        dataclasses.replace(
            settings, max_batch_items=40, packed_batch_items=40, flush_interval=0.05
        ),
        on_error=errors.append,
        sender=sender,
    )
    run_ids = []
    for _ in range(5):
        with instr.run("faulty", customer_id=customer) as run:
            run_ids.append(run.id)
            for _ in range(100):
                tool()
    with drip.customer(customer):

        @instr.metered("faulty.usage")
        def usage() -> None:
            pass

        for _ in range(200):
            usage()
    report = instr.flush(120)
    sender.close()
    instr.shutdown(5)
    assert report.ok, report
    stats = instr.stats()
    assert stats.recorded == 5 * 102 + 200 and stats.rejected == 0 and stats.refused == 0
    assert stats.retries >= 12 and stats.duplicates > 0
    assert transport.plan == [] and transport.seen.count("drop") == 9
    for run_id in run_ids:
        details = client.get_run(run_id)
        assert details.status is RunStatus.COMPLETED and details.totals.event_count == 100
    tools = client.get_usage_summary(customer_id=customer, meter="tool.calls").meters[0]
    assert tools.run_events == 500
    usage_total = client.get_usage_summary(customer_id=customer, meter="faulty.usage")
    assert usage_total.meters[0].usage_records == 200
    # one report per outage (not per attempt), with the failure as its cause
    assert {getattr(e, "code", None) for e in errors} == {"RETRYING"}
    causes = {type(e.__cause__) for e in errors}
    assert causes <= {DripServerError, DripNetworkError, DripRateLimitError}
    assert DripServerError in causes and len(errors) < stats.retries
