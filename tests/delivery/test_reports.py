"""``flush()`` / ``shutdown()`` reports against what the server holds afterwards."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from drip import AsyncDrip, Drip


def test_flush_report_equals_the_servers_count(account: Any, customer: str, kit: Any) -> None:
    with Drip(account.secret_key, account.base_url) as client:
        for _ in range(30):
            with client.run("counted", customer_id=customer):
                for _i in range(100):
                    client.metered("delivery.calls")(lambda: None)()
        report = client.flush(60)
        assert (report.sent, report.failed, report.pending, report.spooled) == (3060, 0, 0, 0)
        assert kit.stored(client, customer, "delivery.calls") == (3000, 0)


def test_shutdown_at_its_deadline_reports_the_truth(
    account: Any, customer: str, proxy: Any, kit: Any
) -> None:
    """A slow server and a short shutdown: what the report says was sent is on the server,
    what it says failed never gets there, and the one batch in flight (pending) may land."""
    proxy.delay = 0.6  # every answer takes 0.6 s
    client = Drip(
        account.secret_key, proxy.url, max_batch_items=1000, flush_interval=60, timeout=30
    )
    for _ in range(50):
        with client.run("slow", customer_id=customer):
            for _i in range(98):
                client.metered("delivery.calls")(lambda: None)()
    report = client.shutdown(1.5)  # 5,000 records, 5 batches of 1,000: not all can go
    assert report.sent + report.failed + report.pending == 5000
    assert report.sent >= 1000 and report.failed >= 1000 and report.pending <= 1000
    time.sleep(2)  # let a request that was in flight finish
    with Drip(account.secret_key, account.base_url) as reader:
        events, _ = kit.stored(reader, customer, "delivery.calls")
        runs = reader.list_runs(customer_id=customer, limit=100).data
    stored = events + sum(2 for r in runs if r.status.value == "COMPLETED")
    stored += sum(1 for r in runs if r.status.value == "RUNNING")
    # the server holds exactly what was reported sent, plus the batch in flight at the deadline
    assert report.sent <= stored <= report.sent + report.pending
    assert client.stats().sent == stored  # once the in-flight answer came, the stats agree


def test_the_worker_sends_through_the_clients_transport(account: Any) -> None:
    """``Drip(transport=httpx.MockTransport(...))`` sees the instrumentation's batches."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        items = httpx.Response(200, content=request.content).json()["items"]
        return httpx.Response(
            200, json={"results": [], "statuses": "c" * len(items),
                       "created": len(items), "duplicates": 0, "updated": 0, "rejected": 0},
        )  # fmt: skip

    client = Drip(
        "sk_test_mocked000", "http://drip.invalid", transport=httpx.MockTransport(handler)
    )
    with client.run("mocked", customer_id="cus_1"):
        client.metered("m")(lambda: None)()
    report = client.flush(10)
    client.close()
    assert report.sent == 3 and [r.url.path for r in seen] == ["/v1/ingest"]


def _record(client: Drip, customer: str, n: int) -> None:
    with client.run("timeouts", customer_id=customer):
        for _ in range(n):
            client.metered("timeouts")(lambda: None)()


@pytest.mark.parametrize("timeout", [float("inf"), 1e308])
def test_flush_and_shutdown_can_wait_as_long_as_it_takes(
    account: Any, customer: str, kit: Any, timeout: float
) -> None:
    # both overflowed the OS's timers: an OverflowError into the caller, nothing waited for
    with Drip(account.secret_key, account.base_url, flush_interval=3600) as client:
        _flush_and_shut_down(client, account, customer, kit, timeout)


def _flush_and_shut_down(
    client: Drip, account: Any, customer: str, kit: Any, timeout: float
) -> None:
    _record(client, customer, 10)
    report = client.flush(timeout)
    assert (report.sent, report.failed, report.pending) == (12, 0, 0)

    async def flush_async() -> Any:
        async with AsyncDrip(account.secret_key, account.base_url, flush_interval=3600) as other:
            with other.run("timeouts", customer_id=customer):
                for _ in range(10):
                    other.metered("timeouts")(lambda: None)()
            return await other._recorder.aflush(timeout)  # what aclose() waits with

    report = asyncio.run(flush_async())
    assert (report.sent, report.failed, report.pending) == (12, 0, 0)
    _record(client, customer, 10)
    report = client.shutdown(timeout)
    assert (report.sent, report.failed, report.pending) == (12, 0, 0)
    assert kit.stored(client, customer, "timeouts") == (30, 0)


@pytest.mark.parametrize("timeout", [float("nan"), -1.0, 0.0])
def test_a_flush_given_no_time_returns_at_once_and_loses_nothing(
    account: Any, customer: str, kit: Any, timeout: float
) -> None:
    with Drip(account.secret_key, account.base_url, flush_interval=3600) as client:
        _record(client, customer, 10)
        report = client.flush(timeout)
        assert report.failed == 0 and report.sent + report.pending == 12
        report = client.shutdown(30)
        assert report.failed == report.pending == 0
        assert kit.stored(client, customer, "timeouts") == (10, 0)


def test_a_request_the_server_never_answers_at_shutdown_is_reported() -> None:
    """A server that accepts the connection and never answers: at the shutdown deadline the
    batch in flight stays pending (it may still land), but it is said, not lost silently at
    exit (before, shutdown logged nothing and called no ``on_error``)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    errors: list[BaseException] = []
    client = Drip("sk_test_silent0000", url, on_error=errors.append, flush_interval=0.05)
    try:
        with client.run("unanswered", customer_id="cus_1"):
            for _ in range(10):
                client.metered("m")(lambda: None)()
        deadline = time.monotonic() + 10
        while not client._recorder.delivery.in_request and time.monotonic() < deadline:
            time.sleep(0.01)
        report = client.shutdown(0.5)
    finally:
        listener.close()
    assert (report.sent, report.failed, report.pending) == (0, 0, 12)
    unanswered = [e for e in errors if getattr(e, "code", None) == "UNANSWERED"]
    assert len(unanswered) == 1 and getattr(unanswered[0], "count", None) == 12
    assert "may not have been delivered" in str(unanswered[0])
