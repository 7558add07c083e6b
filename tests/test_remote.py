"""``drip.context.inject`` / ``extract``: a run continued in another process, on the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import drip
from drip import Drip, RunStatus
from drip._baggage import MAX_BYTES, parse
from drip._default import reset_default_client
from drip.context import current_customer_id, current_run, extract, inject


@pytest.fixture
def b_client(account: Any) -> Iterator[Drip]:
    """The default client: "service B", which continues runs."""
    client = drip.configure(api_key=account.secret_key, base_url=account.base_url)
    try:
        yield client
    finally:
        reset_default_client()


@pytest.fixture
def a_client(account: Any) -> Iterator[Drip]:
    """ "Service A": its own client, which only sends when told to."""
    with Drip(api_key=account.secret_key, base_url=account.base_url, flush_interval=60) as c:
        yield c


@drip.metered("b.work")
def work() -> None:
    pass


def test_inject_outside_a_run_adds_nothing() -> None:
    assert inject({}) == {}
    assert not extract({})


def test_inject_carries_run_customer_parent_and_never_the_key(a_client: Drip, account: Any) -> None:
    with a_client.run("research", customer_id="cus_1") as run:
        outside = parse(inject({})["baggage"])
        with drip.customer("cus_1"):
            handle: list[Any] = []

            @a_client.metered("a.call")
            def call() -> dict[str, str]:
                handle.append(drip.current_event().id)
                return dict(inject({"Baggage": "other=1"}))

            inside = call()
    assert outside == {"run": run.id, "customer": "cus_1", "workflow": "research"}
    assert list(inside) == ["Baggage"]  # the existing header, whatever its case, is extended
    assert inside["Baggage"].startswith("other=1,")
    assert parse(inside["Baggage"])["parent"] == handle[0]
    assert account.secret_key not in str(inside)


def test_extract_continues_the_run_even_when_bs_records_arrive_first(
    a_client: Drip, b_client: Drip
) -> None:
    customer = b_client.create_customer(external_customer_id="remote_1").id
    with a_client.run("pipeline", customer_id=customer, external_run_id="ext-a") as run:

        @a_client.metered("a.call")
        def call() -> dict[str, str]:
            return dict(inject({}))

        headers = call()
        # "service B": what it records reaches the server before A has sent anything
        with extract(headers) as continued:
            assert continued is not None and continued.id == run.id
            assert current_run() is continued and current_customer_id() == customer
            work()
            with drip.run("b.step") as child:
                work()
        assert b_client.flush(30).ok
        assert b_client.get_run(run.id).status is RunStatus.RUNNING  # B never ends it
    assert a_client.flush(30).ok
    details = b_client.get_run(run.id)
    assert details.status is RunStatus.COMPLETED  # A's end, after B's start made the run
    assert b_client.get_run(child.id).parent_run_id == run.id
    events = b_client.get_run_timeline(run.id).events
    [a_call] = [e for e in events if e.meter == "a.call"]
    [b_work] = [e for e in events if e.meter == "b.work"]
    assert b_work.parent_event_id == a_call.id


def test_bad_or_oversized_baggage_is_ignored(b_client: Drip) -> None:
    assert not extract({"baggage": "drip.run=run_1"})  # no customer: nothing to bill
    assert extract({"baggage": "drip.run=nope,drip.customer=cus_1"}).run_id is None
    assert extract({"baggage": "drip.run=run_1,drip.customer=cus_1"}).run_id == "run_1"
    big = "k=" + "v" * MAX_BYTES + ",drip.run=run_1,drip.customer=cus_1"
    assert not extract({"baggage": big})
    with extract({"baggage": ""}) as nothing:
        assert nothing is None and current_run() is None


def test_header_values_that_are_not_text() -> None:
    # requests sends bytes values as given: read as latin-1, as clients send str headers
    assert extract({"Baggage": b"drip.run=run_1,drip.customer=cus_1"}).run_id == "run_1"
    assert not extract({"baggage": 42})  # nothing a client sends: ignored, no error
    with drip.run("a", customer_id="cus_1") as run:
        headers: dict[str, Any] = {"Baggage": b"k=v"}
        assert parse(inject(headers)["Baggage"])["run"] == run.id
        odd: dict[str, Any] = {"baggage": 42}
        assert inject(odd) == {"baggage": 42}  # not drip's to rewrite


def test_inject_adds_opentelemetry_traceparent_alongside() -> None:
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("call") as span:
        headers = inject({})
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert headers["traceparent"].split("-")[1] == trace_id


def test_a_customer_named_by_its_external_id_travels_as_such(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from drip import _checks
    from drip.context import SCOPE

    external = type("ExternalId", (str,), {})  # what the SDK uses for external_customer_id=
    monkeypatch.setattr(_checks, "ExternalId", external, raising=False)
    token = SCOPE.set((external("user_123"), None, None))
    try:
        headers = inject({})
    finally:
        SCOPE.reset(token)
    assert parse(headers["baggage"]) == {"customer_ext": "user_123"}
    carried = extract(headers)
    assert carried.customer_id == "user_123" and type(carried.customer_id) is external
    assert extract({"baggage": "drip.customer=cus_1"}).customer_id.__class__ is str


def test_a_forwarded_header_never_names_the_callers_run_when_the_current_one_does_not_fit() -> None:
    forwarded = "drip.run=run_caller,drip.customer=cus_caller"
    with drip.run("a", customer_id="cus_1"):
        headers = {"baggage": forwarded + "," + ",".join(f"k{i}=v" for i in range(62))}
        assert "drip." not in inject(headers)["baggage"]
