"""``external_customer_id=`` everywhere a customer is named, against the real local server:
the server finds the customer by your own id or creates it on first use (exactly once under
concurrent first uses), or, with auto-creation off, rejects the record with the reason."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import drip
from drip import Drip
from drip.errors import DripAPIError, DripNotFoundError, DripValidationError


@pytest.fixture
def client(account: Any) -> Iterator[Drip]:
    with Drip(api_key=account.secret_key, base_url=account.base_url) as c:
        yield c


def _customers_named(client: Drip, external: str) -> list[Any]:
    return [c for c in client.list_customers().data if c.external_customer_id == external]


def test_client_methods_create_on_first_use_and_reuse(client: Drip) -> None:
    first = client.track_usage(external_customer_id="user_123", meter="api_calls", quantity=2)
    customer = client.get_customer("user_123")  # reads take either id
    assert customer.external_customer_id == "user_123" and customer.id.startswith("cus_")
    assert first.customer_id == customer.id
    client.charge(external_customer_id="user_123", meter="api_calls", quantity=3)
    run = client.start_run(external_customer_id="user_123", workflow_id="chat")
    assert run.customer_id == customer.id and run.external_customer_id == "user_123"
    client.end_run(run.id, "COMPLETED")
    recorded = client.record_run(
        external_customer_id="user_123", workflow="batch", events=[{"eventType": "step"}]
    )
    assert len(_customers_named(client, "user_123")) == 1
    timeline = client.get_run_timeline(recorded.run.id)
    assert timeline.customer_id == customer.id and timeline.external_customer_id == "user_123"
    summary = client.get_usage_summary(customer_id="user_123")
    assert summary.customer_id == customer.id and summary.total("api_calls") == 5
    assert [r.id for r in client.list_runs(customer_id="user_123").data] == [
        recorded.run.id,
        run.id,
    ]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.track_usage(meter="m", quantity=1),
        lambda c: c.track_usage("cus_1", "m", 1, external_customer_id="u"),
        lambda c: c.charge(meter="m", quantity=1),
        lambda c: c.start_run(workflow_id="w", customer_id="cus_1", external_customer_id="u"),
        lambda c: c.record_run(workflow="w"),
        lambda c: c.run("w", customer_id="cus_1", external_customer_id="u"),
        lambda c: c.customer(),
        lambda c: c.customer("cus_1", external_customer_id="u"),
        lambda c: c.metered("m", customer_id="cus_1", external_customer_id="u"),
    ],
)
def test_both_or_neither_is_a_validation_error(client: Drip, call: Any) -> None:
    with pytest.raises(DripValidationError, match="external_customer_id"):
        call(client)


def test_unknown_ids_are_404_on_every_read(client: Drip, tmp_path: Path) -> None:
    client.create_customer(external_customer_id="known")
    for read in (
        lambda: client.get_customer("ghost"),
        lambda: client.list_runs(customer_id="ghost"),
        lambda: client.get_usage_summary(customer_id="ghost"),
        lambda: client.get_usage_summary(customer_id="cus_ghost"),
    ):
        with pytest.raises(DripNotFoundError, match="ghost"):
            read()
    assert client.list_runs(customer_id="known").data == []  # known, no runs: an empty success


def test_instrumentation_with_external_ids(client: Drip) -> None:
    calls = client.metered("tokens", quantity=lambda n: n)(lambda n: n)
    per_user = client.metered("exports", external_customer_id=lambda user, rows: user)(
        lambda user, rows: rows
    )
    with client.run("agent", external_customer_id="u-run") as run:
        calls(40)
        with client.run("child") as child:  # inherits the customer
            calls(2)
    with client.customer(external_customer_id="u-scope"):
        calls(7)  # outside a run: a usage record for that customer
    per_user("u-fn", 3)
    report = client.flush(timeout=10)
    assert report.ok, report
    assert client.get_usage_summary(customer_id="u-run").total("tokens") == 42
    assert client.get_usage_summary(customer_id="u-scope").total("tokens") == 7
    assert client.get_usage_summary(customer_id="u-fn").total("exports") == 1
    runs = {r.id: r for r in client.list_runs(customer_id="u-run").data}
    assert set(runs) == {run.id, child.id}
    assert runs[child.id].parent_run_id == run.id
    timeline = client.get_run_timeline(run.id)
    assert timeline.external_customer_id == "u-run" and timeline.customer_id.startswith("cus_")


def test_default_client_run_and_metered(account: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIP_API_KEY", account.secret_key)
    monkeypatch.setenv("DRIP_BASE_URL", account.base_url)
    drip.configure()

    @drip.metered("llm_tokens", quantity=lambda r: r)
    def answer(tokens: int) -> int:
        return tokens

    with drip.run(workflow="support", external_customer_id="acme-user-7"):
        answer(120)
    assert drip.flush(timeout=10).ok
    with Drip() as client:
        assert client.get_usage_summary(customer_id="acme-user-7").total("llm_tokens") == 120
    drip.shutdown()


def test_sixteen_threads_racing_on_a_new_external_id_create_one_customer(client: Drip) -> None:
    external = f"racer-{uuid.uuid4().hex[:8]}"
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def first_use(i: int) -> None:
        try:
            start.wait()
            if i % 2:
                client.track_usage(external_customer_id=external, meter="api_calls", quantity=1)
            else:
                run = client.start_run(external_customer_id=external, workflow_id="race")
                client.end_run(run.id, "COMPLETED")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    found = _customers_named(client, external)
    assert len(found) == 1
    assert client.get_usage_summary(customer_id=external).total("api_calls") == 8
    assert len(client.list_runs(customer_id=found[0].id, limit=100).data) == 8


def test_sixteen_instrumented_clients_racing_through_ingest(account: Any) -> None:
    external = f"batch-racer-{uuid.uuid4().hex[:8]}"
    start = threading.Barrier(16)
    reports: list[Any] = []

    def first_use() -> None:
        with Drip(api_key=account.secret_key, base_url=account.base_url) as own:
            start.wait()
            with own.run("race", external_customer_id=external):
                own.metered("steps")(lambda: None)()
            reports.append(own.flush(timeout=20))

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 16 and all(r.ok for r in reports), reports
    with Drip(api_key=account.secret_key, base_url=account.base_url) as client:
        assert len(_customers_named(client, external)) == 1
        assert client.get_usage_summary(customer_id=external).total("steps") == 16


@pytest.fixture
def strict_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from drip.server import start_server

    monkeypatch.setenv("DRIP_AUTO_CREATE_CUSTOMERS", "0")
    server = start_server(f"sqlite:///{tmp_path / 'strict.db'}")
    monkeypatch.delenv("DRIP_AUTO_CREATE_CUSTOMERS")
    yield server
    server.stop()


def test_auto_creation_off_rejects_with_the_reason(strict_server: Any) -> None:
    failures: list[BaseException] = []
    with Drip(
        api_key=strict_server.create_key(),
        base_url=strict_server.url,
        on_error=failures.append,
    ) as client:
        with pytest.raises(DripAPIError, match="does not create customers") as caught:
            client.track_usage(external_customer_id="stranger", meter="m", quantity=1)
        assert caught.value.status_code == 422 and caught.value.code == "CUSTOMER_NOT_FOUND"
        # an existing customer is found by its external id
        client.create_customer(external_customer_id="member")
        client.track_usage(external_customer_id="member", meter="m", quantity=1)
        with client.run("w", external_customer_id="stranger"):
            pass
        with client.run("w", external_customer_id="member"):
            client.metered("m")(lambda: None)()
        report = client.flush(timeout=10)
        assert report.failed >= 1 and report.sent >= 3
        assert any("does not create customers" in str(f) for f in failures), failures
        assert [c.external_customer_id for c in client.list_customers().data] == ["member"]
        assert client.get_usage_summary(customer_id="member").total("m") == 2


def test_own_ids_that_look_like_paths_are_read_back(client: Drip) -> None:
    """``get_customer`` by an own id holding a "/" or made of dots: "acme/alice" was 404 "No
    such endpoint", and "." or ".." addressed the customer list or the API root."""
    for own in ("acme/alice", "acme/", "/lead", ".", "..", "a/../b", "%2F", "50%"):
        made = client.create_customer(external_customer_id=own)
        found = client.get_customer(own)
        assert (found.id, found.external_customer_id) == (made.id, own)
        assert client.get_customer(made.id).external_customer_id == own
    with pytest.raises(DripNotFoundError):
        client.get_customer("acme/bob")


def test_your_own_id_given_as_customer_id_says_where_it_goes(account: Any) -> None:
    """``customer_id="user_123"`` (your own id where Drip's goes) is refused by the server; the
    reason, raised by a client call and reported to ``on_error`` by the instrumentation, says
    to use ``external_customer_id=``."""
    reported: list[BaseException] = []
    with Drip(
        api_key=account.secret_key, base_url=account.base_url, on_error=reported.append
    ) as client:
        client.create_customer(external_customer_id="own-123")
        with pytest.raises(DripAPIError) as info:
            client.track_usage(customer_id="own-123", meter="m", quantity=1)
        assert "external_customer_id=" in str(info.value)
        with client.run("wf", customer_id="own-123"):
            pass
        assert client.flush(timeout=10).failed == 2  # its start and its end
    assert reported and "external_customer_id=" in str(reported[0])
