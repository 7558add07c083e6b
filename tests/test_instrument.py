"""``@metered``, ``run``, ``customer`` and ``current_event``: what each call records.

These tests capture records in memory (``drip.testing.capture``) and read them back as the
exact wire items; ``test_instrument_live.py`` checks the same behaviour on the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from drip import instrument as drip
from drip._config import resolve_settings
from drip.context import EMPTY, SCOPE
from drip.errors import DripValidationError
from drip.instrument import Instrumentation
from drip.models import IngestEvent
from drip.testing import Capture, capture


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    assert SCOPE.get() == EMPTY
    yield
    assert SCOPE.get() == EMPTY, "a test leaked drip context"


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


def by_type(cap: Capture) -> dict[str, IngestEvent]:
    events = {e.event_type: e for e in cap.events}
    assert len(events) == len(cap.events), "event types are not unique in this test"
    return events


# -- function kinds --------------------------------------------------------------------------


@drip.metered("sync.calls", units="calls")
def add(a: int, b: int) -> int:
    return a + b


@drip.metered("async.calls")
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def test_sync_function_records_one_event(cap: Capture) -> None:
    with drip.run("wf", customer_id="cus_1") as run:
        assert add(2, 3) == 5
    [event] = cap.events
    assert (event.run_id, event.meter, event.event_type) == (run.id, "sync.calls", "sync.calls")
    assert (event.quantity, event.units, event.outcome, event.error_type) == (
        1,
        "calls",
        "ok",
        None,
    )
    assert event.id.startswith("evt_") and len(event.id) == 36
    assert event.parent_event_id is None and event.duration_ms is not None
    assert event.timestamp is not None and event.timestamp.endswith("Z")
    assert add.__name__ == "add" and add.__wrapped__(1, 1) == 2  # type: ignore[attr-defined]


async def test_coroutine_records_one_event(cap: Capture) -> None:
    import inspect

    assert inspect.iscoroutinefunction(async_add)
    async with drip.run("wf", customer_id="cus_1") as run:
        assert await async_add(1, 2) == 3
    [event] = cap.events
    assert (event.run_id, event.meter, event.outcome) == (run.id, "async.calls", "ok")


def test_generator_is_metered_when_exhausted_and_covers_iteration(cap: Capture) -> None:
    import time

    @drip.metered("gen.tokens")
    def stream(n: int) -> Iterator[int]:
        for i in range(n):
            time.sleep(0.01)
            drip.current_event().add(10)
            add(i, i)  # a child of the generator's event
            yield i

    with drip.run("wf", customer_id="cus_1"):
        gen = stream(3)
        assert cap.events == []  # not metered when created
        seen = []
        for value in gen:
            seen.append(value)
            sibling()  # the consumer's calls are not the generator's children
    assert seen == [0, 1, 2]
    events = cap.events
    parent = next(e for e in events if e.meter == "gen.tokens")
    assert parent.quantity == 30 and parent.duration_ms is not None and parent.duration_ms >= 30
    children = [e for e in events if e.meter == "sync.calls"]
    assert len(children) == 3 and all(c.parent_event_id == parent.id for c in children)
    siblings = [e for e in events if e.meter == "sibling"]
    assert len(siblings) == 3 and all(s.parent_event_id is None for s in siblings)


@drip.metered("sibling")
def sibling() -> None:
    pass


def test_generator_return_value_send_and_throw(cap: Capture) -> None:
    @drip.metered("echo", quantity=lambda total: total)
    def echo() -> Iterator[int]:
        total = 0
        while True:
            try:
                got = yield total
            except ValueError:
                got = 100
            if got is None:
                return total
            total += got

    with drip.run("wf", customer_id="cus_1"):
        gen = echo()
        assert next(gen) == 0
        assert gen.send(5) == 5
        assert gen.throw(ValueError("x")) == 105
        with pytest.raises(StopIteration) as stop:
            gen.send(None)
    assert stop.value.value == 105
    [event] = cap.events
    assert event.quantity == 105 and event.outcome == "ok"


def test_abandoned_generator_is_recorded_once_and_its_finally_runs(cap: Capture) -> None:
    cleaned = []

    @drip.metered("abandoned")
    def stream() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            cleaned.append(True)

    with drip.run("wf", customer_id="cus_1"):
        for _ in stream():
            break
        gc.collect()
    [event] = cap.events
    assert event.meter == "abandoned" and event.outcome == "ok" and cleaned == [True]


def test_generator_error_is_recorded_and_propagates(cap: Capture) -> None:
    @drip.metered("broken")
    def stream() -> Iterator[int]:
        yield 1
        raise KeyError("boom")

    with drip.run("wf", customer_id="cus_1"), pytest.raises(KeyError, match="boom"):
        list(stream())
    [event] = cap.events
    assert (event.outcome, event.error_type) == ("error", "KeyError")


def test_run_opened_inside_a_generator_stays_inside_it(cap: Capture) -> None:
    """Context the body sets across a ``yield`` neither leaks out nor gets lost."""

    @drip.metered("outer.gen")
    def stream() -> Iterator[int]:
        with drip.run("inner", customer_id="cus_2"):
            yield 1
            add(1, 1)  # still in the inner run after resuming
            yield 2

    with drip.run("outer", customer_id="cus_1") as outer:
        for _ in stream():
            sibling()  # in the outer run, not the inner one
    inner_id = next(s.id for s in cap.run_starts if s.workflow == "inner")
    assert {e.run_id for e in cap.events if e.meter == "sibling"} == {outer.id}
    assert {e.run_id for e in cap.events if e.meter == "sync.calls"} == {inner_id}
    assert cap.run_end(inner_id) is not None


async def test_async_generator_nesting_and_no_leak(cap: Capture) -> None:
    @drip.metered("agen.tokens")
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0.01)
            drip.current_event().add(2)
            await async_add(i, i)
            yield i

    async with drip.run("wf", customer_id="cus_1"):
        values = []
        async for value in stream(3):
            values.append(value)
            sibling()
    assert values == [0, 1, 2]
    parent = next(e for e in cap.events if e.meter == "agen.tokens")
    assert parent.quantity == 6 and parent.duration_ms is not None and parent.duration_ms >= 30
    children = [e for e in cap.events if e.meter == "async.calls"]
    assert len(children) == 3 and {c.parent_event_id for c in children} == {parent.id}
    assert all(e.parent_event_id is None for e in cap.events if e.meter == "sibling")


async def test_async_generator_broken_off_and_cancelled(cap: Capture) -> None:
    cleaned = []

    @drip.metered("agen.break")
    async def stream(delay: float) -> AsyncIterator[int]:
        try:
            for i in range(10):
                await asyncio.sleep(delay)  # cancelled here in the second case
                yield i
        finally:
            await asyncio.sleep(0)  # awaiting in cleanup works too
            cleaned.append(True)

    async with drip.run("wf", customer_id="cus_1"):
        async with contextlib.aclosing(stream(0)) as agen:
            async for _ in agen:
                break

        async def consume() -> None:
            async for _ in stream(10):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    events = [e for e in cap.events if e.meter == "agen.break"]
    assert cleaned == [True, True]
    assert sorted((e.outcome, e.error_type or "") for e in events) == [
        ("error", "CancelledError"),
        ("ok", ""),
    ]


def test_async_generator_abandoned_without_aclose_is_finalized_by_the_loop() -> None:
    with capture() as cap:

        @drip.metered("agen.gc")
        async def stream() -> AsyncIterator[int]:
            yield 1
            yield 2

        async def main() -> None:
            async with drip.run("wf", customer_id="cus_1"):
                async for _ in stream():
                    break

        asyncio.run(main())  # shutdown_asyncgens closes it
    assert [e.meter for e in cap.events] == ["agen.gc"]


class Service:
    factor = 10

    @drip.metered("method")
    def method(self, x: int) -> int:
        return x * self.factor

    @drip.metered("cm.below")
    @classmethod
    def cm_below(cls, x: int) -> int:
        return x + cls.factor

    @classmethod
    @drip.metered("cm.above")
    def cm_above(cls, x: int) -> int:
        return x - cls.factor

    @drip.metered("sm.below")
    @staticmethod
    def sm_below(x: int) -> int:
        return x * 2

    @staticmethod
    @drip.metered("sm.above")
    def sm_above(x: int) -> int:
        return x * 3

    @drip.metered("amethod")
    async def amethod(self, x: int) -> int:
        return x + self.factor


async def test_methods_classmethods_staticmethods_either_order(cap: Capture) -> None:
    s = Service()
    async with drip.run("wf", customer_id="cus_1"):
        assert s.method(2) == 20
        assert Service.cm_below(1) == 11 and s.cm_below(1) == 11
        assert Service.cm_above(11) == 1
        assert Service.sm_below(2) == 4 and s.sm_below(2) == 4
        assert Service.sm_above(2) == 6
        assert await s.amethod(1) == 11
    counts: dict[str, int] = {}
    for e in cap.events:
        counts[e.meter or ""] = counts.get(e.meter or "", 0) + 1
    assert counts == {
        "method": 1, "cm.below": 2, "cm.above": 1, "sm.below": 2, "sm.above": 1, "amethod": 1,
    }  # fmt: skip


# -- events, quantities, metadata --------------------------------------------------------------


def test_quantity_callable_event_type_and_metadata(cap: Capture) -> None:
    @drip.metered(
        "llm.tokens",
        quantity=lambda r: r["total"],
        units="tokens",
        event_type="llm.call",
        metadata={"model": "m1"},
    )
    def call() -> dict[str, int]:
        drip.current_event().set_metadata(prompt="p")
        drip.current_event().metadata["extra"] = 1
        return {"total": 42}

    with drip.run("wf", customer_id="cus_1"):
        call()
    [event] = cap.events
    assert (event.meter, event.event_type, event.quantity, event.units) == (
        "llm.tokens", "llm.call", 42, "tokens",
    )  # fmt: skip
    assert event.metadata == {"model": "m1", "prompt": "p", "extra": 1}


def test_current_event_set_quantity_id_and_outside(cap: Capture) -> None:
    ids = []

    @drip.metered("q")
    def call() -> None:
        handle = drip.current_event()
        assert handle.recording and handle.quantity is None
        handle.set_quantity(7.5)
        ids.append(handle.id)

    with drip.run("wf", customer_id="cus_1"):
        call()
        outside = drip.current_event()
        assert not outside.recording and outside.id is None
        outside.add(3)  # ignored, never raises
    [event] = cap.events
    assert event.quantity == 7.5 and ids == [event.id]


def test_nested_events_name_their_parent(cap: Capture) -> None:
    @drip.metered("outer")
    def outer() -> None:
        inner()
        inner()

    @drip.metered("inner")
    def inner() -> None:
        leaf()

    @drip.metered("leaf")
    def leaf() -> None:
        pass

    with drip.run("wf", customer_id="cus_1"):
        outer()
    by_id = {e.id: e for e in cap.events}
    leaves = [e for e in cap.events if e.meter == "leaf"]
    assert len(leaves) == 2 and len(by_id) == 5
    for leaf_event in leaves:
        inner_event = by_id[leaf_event.parent_event_id or ""]
        assert inner_event.meter == "inner"
        assert by_id[inner_event.parent_event_id or ""].meter == "outer"


def test_failed_call_records_error_and_propagates_unchanged(cap: Capture) -> None:
    error = ConnectionError("down")

    @drip.metered("flaky", quantity=lambda r: r.tokens)
    def flaky() -> Any:
        raise error

    with drip.run("wf", customer_id="cus_1"), pytest.raises(ConnectionError) as raised:
        flaky()
    assert raised.value is error
    [event] = cap.events
    assert (event.outcome, event.error_type, event.quantity) == ("error", "ConnectionError", 0)


def test_run_event_and_its_parent(cap: Capture) -> None:
    @drip.metered("tool")
    def tool(run: Any) -> str | None:
        return str(run.event("tool.note", 3, units="notes", description="d", metadata={"k": 1}))

    with drip.run("wf", customer_id="cus_1") as run:
        note_id = tool(run)
        top_id = run.event("top")
    events = by_type(cap)
    assert events["tool.note"].id == note_id and events["top"].id == top_id
    assert events["tool.note"].parent_event_id == events["tool"].id
    assert events["top"].parent_event_id is None and events["top"].quantity is None
    assert (events["tool.note"].quantity, events["tool.note"].units) == (3, "notes")
    assert events["tool.note"].metadata == {"k": 1} and events["tool.note"].description == "d"


# -- runs ----------------------------------------------------------------------------------------


def test_run_handle_has_its_id_at_once_and_the_start_and_end_records(cap: Capture) -> None:
    with drip.run(
        "research", customer_id="cus_1", external_run_id="ext-1", metadata={"a": 1}
    ) as run:
        assert run.id.startswith("run_") and len(run.id) == 36
        assert [s.id for s in cap.run_starts] == [run.id]  # buffered when entered
    [start] = cap.run_starts
    assert (start.workflow, start.customer_id, start.external_run_id) == (
        "research", "cus_1", "ext-1",
    )  # fmt: skip
    assert start.metadata == {"a": 1} and start.parent_run_id is None
    end = cap.run_end(run.id)
    assert end is not None and end.status.value == "COMPLETED" and end.error_code is None


def test_child_run_inherits_customer_and_names_parent(cap: Capture) -> None:
    with drip.customer("cus_outer"):
        with drip.run("parent") as parent, drip.run("child") as child:
            assert child.parent_run_id == parent.id and child.customer_id == "cus_outer"
            add(1, 1)
        with drip.run("other", customer_id="cus_x") as other:
            assert other.customer_id == "cus_x"
    starts = {s.id: s for s in cap.run_starts}
    assert starts[child.id].parent_run_id == parent.id
    assert starts[child.id].customer_id == "cus_outer"
    [event] = cap.events
    assert event.run_id == child.id  # the innermost run


def test_failed_run_keeps_the_exception_and_records_its_class(cap: Capture) -> None:
    class QuotaExceeded(Exception):
        pass

    error = QuotaExceeded("over quota")
    with pytest.raises(QuotaExceeded) as raised, drip.run("wf", customer_id="c") as run:
        raise error
    assert raised.value is error
    end = cap.run_end(run.id)
    assert end is not None and end.status.value == "FAILED"
    assert (end.error_code, end.error_message) == ("QuotaExceeded", "over quota")


async def test_cancelled_run_ends_cancelled(cap: Capture) -> None:
    ids: list[str] = []

    async def agent() -> None:
        async with drip.run("wf", customer_id="c") as run:
            ids.append(run.id)
            await asyncio.sleep(10)

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    end = cap.run_end(ids[0])
    assert end is not None and end.status.value == "CANCELLED"
    assert end.error_code == "CancelledError"


def test_keyboard_interrupt_ends_cancelled(cap: Capture) -> None:
    with pytest.raises(KeyboardInterrupt), drip.run("wf", customer_id="c") as run:
        raise KeyboardInterrupt
    end = cap.run_end(run.id)
    assert end is not None and end.status.value == "CANCELLED"


async def test_run_as_decorator_sync_and_async(cap: Capture) -> None:
    @drip.run("sync.job", customer_id="c")
    def job(x: int) -> int:
        return add(x, 1)

    @drip.run("async.job", customer_id="c")
    async def ajob(x: int) -> int:
        return await async_add(x, 1)

    assert job(1) == 2 and job(2) == 3 and await ajob(5) == 6
    starts = cap.run_starts
    assert [s.workflow for s in starts] == ["sync.job", "sync.job", "async.job"]
    assert len({s.id for s in starts}) == 3
    assert {e.run_id for e in cap.events} == {s.id for s in starts}
    assert all(e.status.value == "COMPLETED" for e in cap.run_ends)
    with pytest.raises(TypeError, match="generator"):
        drip.run("x")(lambda: (yield))  # type: ignore[arg-type,misc]


async def test_one_run_context_object_used_by_concurrent_tasks(cap: Capture) -> None:
    shared = drip.run("shared", customer_id="c")

    async def work(i: int) -> str:
        async with shared as run:
            await asyncio.sleep(0.01 * (3 - i))
            await async_add(i, 0)
            return run.id

    ids = await asyncio.gather(*(work(i) for i in range(3)))
    assert len(set(ids)) == 3
    assert {e.run_id for e in cap.events} == set(ids)
    assert {e.run_id for e in cap.run_ends} == set(ids)


# -- usage outside runs, customers -------------------------------------------------------------


def test_outside_a_run_with_a_customer_is_usage(cap: Capture) -> None:
    @drip.metered("api.calls", customer_id=lambda user, **_: user["customer"])
    def handle(user: dict[str, str], *, size: int) -> int:
        add(1, 1)  # nested: inherits the customer
        return size

    with drip.customer("cus_ctx"):
        add(1, 2)
    handle({"customer": "cus_arg"}, size=3)
    usage = cap.usage
    assert [(u.usage_type, u.customer_id) for u in usage] == [
        ("sync.calls", "cus_ctx"),
        ("sync.calls", "cus_arg"),
        ("api.calls", "cus_arg"),
    ]
    assert usage[0].id.startswith("use_") and usage[0].units == "calls"
    assert usage[0].metadata is not None and usage[0].metadata["drip"]["outcome"] == "ok"
    assert usage[1].metadata is not None
    assert usage[1].metadata["drip"]["parentId"] == usage[2].id
    assert cap.events == []


def test_decorator_customer_wins_and_customer_scope_restores() -> None:
    @drip.metered("x", customer_id="cus_fixed")
    def fixed() -> None:
        pass

    with capture() as cap:
        with drip.customer("cus_ctx") as cid:
            assert cid == "cus_ctx"
            fixed()
        assert SCOPE.get() == EMPTY
    assert [u.customer_id for u in cap.usage] == ["cus_fixed"]


async def test_customer_scope_async_and_as_decorator(cap: Capture) -> None:
    @drip.customer("cus_deco")
    async def job() -> int:
        return await async_add(1, 1)

    async with drip.customer("cus_async"):
        await async_add(1, 1)
    await job()
    assert [u.customer_id for u in cap.usage] == ["cus_async", "cus_deco"]


# -- call-time problems: strict raises, lenient reports ---------------------------------------


def test_no_customer_strict_raises_before_the_call() -> None:
    calls = []

    @drip.metered("m")
    def f() -> None:
        calls.append(1)

    with capture() as cap, pytest.raises(DripValidationError, match="without a customer"):
        f()
    assert calls == [] and cap.usage == [] and len(cap.errors) == 1


def test_no_customer_lenient_runs_the_function_and_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @drip.metered("m")
    def f() -> int:
        return 5

    with capture(strict=False) as cap, caplog.at_level(logging.WARNING, logger="drip"):
        assert f() == 5
        assert f() == 5
        with drip.run("wf") as run:  # a run without a customer: reported, not recorded
            assert f() == 5
            assert run.id.startswith("run_")
    assert cap.records == []
    assert len(cap.errors) == 3 and all(isinstance(e, DripValidationError) for e in cap.errors)
    assert cap.instrumentation.stats().errors == 3
    assert "without a customer" in caplog.text and "has no customer" in caplog.text


@pytest.mark.parametrize(
    "given", [{"external_customer_id": ""}, {"external_customer_id": 42}, {"customer_id": " "}]
)
def test_a_customer_id_that_cannot_be_one_is_a_call_time_problem(given: dict[str, Any]) -> None:
    """The id in ``with drip.run(..., external_customer_id=user_id)`` comes from data (a
    request, a row): one that cannot be an id raised into the application (its request
    failed). It is reported like a run without a customer, and raised in strict mode; the
    run does not take the customer around it (that would bill someone else)."""

    @drip.metered("m")
    def f() -> int:
        return 5

    with capture(strict=False) as cap:
        with drip.customer("cus_outer"), drip.run("wf", **given) as run:
            assert f() == 5 and run.id.startswith("run_")
        assert cap.records == []  # neither the run nor its event, and nothing for cus_outer
        [problem] = [e for e in cap.errors if "customer" in str(e)]
        assert isinstance(problem, (DripValidationError, TypeError))
        assert "customer_id" in str(problem)
    with (
        capture(),
        pytest.raises((DripValidationError, TypeError), match="customer_id"),
        drip.run("wf", **given),  # strict: raised where the run opens
    ):
        pass
    with pytest.raises((DripValidationError, TypeError), match="customer_id"):

        @drip.run("wf", **given)  # a decorator's constant: a mistake, raised when applied
        def job() -> None:
            pass


@pytest.mark.parametrize("given", [{"external_customer_id": ""}, {"customer_id": 7}])
def test_a_customer_scope_for_an_id_that_cannot_be_one_bills_nobody(
    given: dict[str, Any],
) -> None:
    """``with drip.customer(external_customer_id=user_id)``: as for ``drip.run``, an id from
    data that cannot be one is reported (raised in strict mode), and what runs inside is not
    billed to the customer around it."""

    @drip.metered("m")
    def f() -> int:
        return 5

    with capture(strict=False) as cap:
        with drip.customer("cus_outer"), drip.customer(**given):
            assert f() == 5
        assert cap.records == []
        assert any("customer_id" in str(e) for e in cap.errors)
    with (
        capture(),
        pytest.raises((DripValidationError, TypeError), match="customer_id"),
        drip.customer(**given),
    ):
        pass


def test_an_event_refused_for_its_metadata_is_named_in_the_log_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A file name from ``os.listdir`` that is not UTF-8 (a lone surrogate in Python)."""
    name = os.fsdecode(b"r\xe9sum\xe9.pdf")
    with (
        capture(strict=False) as cap,
        caplog.at_level(logging.WARNING, logger="drip"),
        drip.run("files", customer_id="cus_files") as run,
    ):
        assert run.event("file.read", 1, metadata={"file": name}) is None
        assert run.event("file.ok", 1, metadata={"file": "ok"}) is not None
    assert [e.event_type for e in cap.events] == ["file.ok"]
    assert len(cap.errors) == 1
    assert "the event 'file.read' was not recorded: metadata holds a lone surrogate" in caplog.text


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        (lambda r: 1 / 0, "quantity callable raised ZeroDivisionError"),
        (lambda r: float("nan"), "must be finite"),
        (lambda r: "12", "must be a number, got str"),
        (lambda r: True, "must be a number, got bool"),
        (lambda r: -3, "must be >= 0"),
        (lambda r: 10**400, "must be at most"),
        # a reply without the field (``reply.get("tokens")``): was 0 with outcome ok, unsaid
        (lambda r: None, "quantity callable returned None"),
    ],
)
def test_bad_quantity_at_call_time(quantity: Any, message: str) -> None:
    @drip.metered("m", quantity=quantity)
    def f() -> int:
        return 1

    with capture(strict=False) as lenient, drip.run("wf", customer_id="c"):
        assert f() == 1  # the host application goes on
    assert [e.quantity for e in lenient.events] == [0] and message in str(lenient.errors[0])
    # recorded, but not as a success: outcome error, and the reason travels with the event
    event = lenient.events[0]
    assert (event.outcome, event.error_type) == ("error", "DripValidationError")
    assert event.metadata is not None and message in event.metadata["dripError"]
    with (
        capture() as strict,
        drip.run("wf", customer_id="c"),
        pytest.raises(DripValidationError, match=message),
    ):
        f()
    assert len(strict.events) == 1  # recorded first, then raised


def test_bad_handle_quantity_is_reported_when_the_call_ends() -> None:
    @drip.metered("m")
    def f() -> None:
        drip.current_event().add("3")  # type: ignore[arg-type]

    with (
        capture() as cap,
        drip.run("wf", customer_id="c"),
        pytest.raises(DripValidationError, match="bad quantity '3'"),
    ):
        f()
    assert len(cap.events) == 1


def test_on_error_callback_gets_call_time_problems() -> None:
    seen: list[BaseException] = []
    settings = resolve_settings(api_key="sk_test_000000", base_url="http://127.0.0.1:9", env={})
    instr = Instrumentation(settings, on_error=seen.append, sender=lambda body: None)  # type: ignore[arg-type,return-value]

    @instr.metered("m")
    def f() -> int:
        return 1

    assert f() == 1  # no customer: lenient by default
    assert len(seen) == 1 and isinstance(seen[0], DripValidationError)
    assert instr.stats().errors == 1 and "customer" in (instr.stats().last_error or "")
    instr.shutdown(1)


# -- decoration-time errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"meter": ""}, DripValidationError, "meter must be a non-empty"),
        ({"meter": "x" * 300}, DripValidationError, "at most 256"),
        ({"meter": 5}, TypeError, "meter must be a string"),
        ({"meter": "m", "quantity": "1"}, TypeError, "quantity must be a number or a callable"),
        ({"meter": "m", "quantity": True}, TypeError, "quantity must be a number"),
        ({"meter": "m", "quantity": float("inf")}, DripValidationError, "finite"),
        ({"meter": "m", "units": 3}, TypeError, "units must be a string"),
        ({"meter": "m", "event_type": ""}, DripValidationError, "event_type"),
        ({"meter": "m", "customer_id": ""}, DripValidationError, "customer_id"),
        ({"meter": "m", "metadata": [1]}, TypeError, "metadata must be a dict"),
        ({"meter": "m", "metadata": {"x": object()}}, DripValidationError, "JSON"),
        ({"meter": "m", "metadata": {"x": "y" * 20000}}, DripValidationError, "limit"),
    ],
)
def test_decoration_time_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        drip.metered(**kwargs)


def test_bare_decorator_and_non_callable_and_bad_run_arguments() -> None:
    with pytest.raises(TypeError, match="needs a meter name"):
        drip.metered(add)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="only decorate a callable"):
        drip.metered("m")(42)  # type: ignore[type-var]
    with pytest.raises(DripValidationError, match="workflow"):
        drip.run("")
    with pytest.raises(DripValidationError, match="customer_id"):
        drip.customer(" ")(add)  # a decorator's constant: raised when applied
    with pytest.raises(DripValidationError, match="customer_id"):
        drip.customer()  # neither id: a mistake in the code


# -- clients ------------------------------------------------------------------------------------


def _instr(sent: list[bytes]) -> Instrumentation:
    from drip.models import IngestResult

    def sender(body: bytes) -> IngestResult:
        sent.append(body)
        import json

        items = json.loads(body)["items"]
        return IngestResult.model_validate(
            {
                "results": [
                    {"index": i, "id": it.get("id") or it.get("runId"), "status": "created"}
                    for i, it in enumerate(items)
                ],
                "created": len(items), "duplicates": 0, "updated": 0, "rejected": 0,
            }
        )  # fmt: skip

    settings = resolve_settings(api_key="sk_test_000000", base_url="http://127.0.0.1:9", env={})
    return Instrumentation(settings, sender=sender)


def test_metered_inside_a_client_run_records_into_that_client() -> None:
    sent_x: list[bytes] = []
    sent_y: list[bytes] = []
    x, y = _instr(sent_x), _instr(sent_y)

    @y.metered("bound.to.y")
    def f() -> None:
        add(1, 1)  # module-level decorator

    with x.run("wf", customer_id="c") as run:
        f()
        with drip.run("child"):  # module-level run inside X's run: X's child
            add(2, 2)
    assert x.flush(5).sent == 7 and y.flush(5).sent == 0  # 2 runs (start + end), 3 events
    body = b"".join(sent_x)
    assert body.count(b'"type":"event"') == 3 and run.id.encode() in body
    assert sent_y == []
    x.shutdown(1)
    y.shutdown(1)


def test_problems_remembered_for_the_log_stay_bounded(caplog: pytest.LogCaptureFixture) -> None:
    # each distinct problem was remembered for good: a long process meeting ever new customer
    # ids that are not ids grew without bound
    from drip._recorder import _LOGGED_MAX, log_limited

    last: dict[str, float] = {}
    with caplog.at_level(logging.WARNING, logger="drip"):
        for i in range(5 * _LOGGED_MAX):
            log_limited(last, DripValidationError(f"customer_id {i:08d} is not an id"))
        log_limited(last, DripValidationError("customer_id 00000003 is not an id"))
    assert len(last) <= _LOGGED_MAX
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 5 * _LOGGED_MAX + 1  # each new problem said once (and a forgotten one)
