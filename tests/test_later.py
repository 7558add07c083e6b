"""``drip._metered.begin_later``: an event begun now and ended later, exactly once.

Records are captured in memory (``drip.testing.capture``) and read back as the wire items; the
LLM integrations' tests (``tests/integrations/``) check the same events on the real server.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from drip import instrument as drip
from drip._default import default_recorder
from drip._metered import Later, begin_later, later_spec
from drip.context import EMPTY, SCOPE
from drip.errors import DripValidationError
from drip.testing import Capture, capture

SPEC = later_spec(None, default_recorder, "llm_tokens", "tokens", "a test")


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    assert SCOPE.get() == EMPTY
    yield
    assert SCOPE.get() == EMPTY, "a test leaked drip context"


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


def begin() -> Later:
    later = begin_later(SPEC)
    assert later is not None
    return later


def test_ended_later_records_one_event_in_the_run(cap: Capture) -> None:
    with drip.run("wf", customer_id="cus_1") as run:
        later = begin()
        assert cap.events == []  # nothing is recorded before the end
        assert later.end(150, {"model": "m", "streamed": True}) is True
        assert later.ended
    [event] = cap.events
    assert (event.run_id, event.meter, event.event_type) == (run.id, "llm_tokens", "llm_tokens")
    assert (event.quantity, event.units, event.outcome) == (150, "tokens", "ok")
    assert event.metadata == {"model": "m", "streamed": True}
    assert event.parent_event_id is None and event.duration_ms is not None


def test_it_nests_under_the_current_call_and_its_children_nest_under_it(cap: Capture) -> None:
    seen: list[str | None] = []

    @drip.metered("inner")
    def inner() -> None:
        seen.append(drip.current_event().id)

    @drip.metered("outer")
    def outer() -> Later:
        later = begin()
        token = later.enter()
        try:
            drip.current_event().set_metadata(set_inside=1)
            inner()
        finally:
            later.exit(token)
        inner()  # after exit: a child of outer again
        return later

    with drip.run("wf", customer_id="cus_1"):
        outer().end(3, {"model": "m"})
    by_meter: dict[str, list[object]] = {}
    for e in cap.events:
        by_meter.setdefault(e.meter, []).append(e)
    [llm], [out], inners = by_meter["llm_tokens"], by_meter["outer"], by_meter["inner"]
    assert llm.parent_event_id == out.id  # type: ignore[attr-defined]
    assert [i.parent_event_id for i in inners] == [llm.id, out.id]  # type: ignore[attr-defined]
    assert llm.metadata == {"set_inside": 1, "model": "m"}  # type: ignore[attr-defined]


def test_ended_once_whoever_ends_it_and_however_often(cap: Capture) -> None:
    with drip.run("wf", customer_id="cus_1"):
        later = begin()
        start = threading.Barrier(8)
        won: list[bool] = []

        def end() -> None:
            start.wait()
            won.append(later.end(1, {"by": threading.get_ident()}))

        threads = [threading.Thread(target=end) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert later.end(99) is False
    assert sorted(won) == [False] * 7 + [True]
    [event] = cap.events
    assert event.quantity == 1


async def test_ended_from_another_task_and_an_error_outcome(cap: Capture) -> None:
    error = TimeoutError("stream dropped")
    async with drip.run("wf", customer_id="cus_1"):
        later = begin()

        async def ender() -> None:
            await asyncio.sleep(0)
            later.end(12, {"complete": False}, error)

        await asyncio.create_task(ender())
    [event] = cap.events
    assert (event.outcome, event.error_type, event.quantity) == ("error", "TimeoutError", 12)
    assert event.metadata == {"complete": False}


def test_context_gives_work_elsewhere_the_event_as_parent(cap: Capture) -> None:
    @drip.metered("tool")
    def tool() -> None:
        pass

    with drip.run("wf", customer_id="cus_1"):
        later = begin()
        ctx = later.context()
        worker = threading.Thread(target=ctx.run, args=(tool,))
        worker.start()
        worker.join()
        later.end(1)
    tool_event = next(e for e in cap.events if e.meter == "tool")
    llm = next(e for e in cap.events if e.meter == "llm_tokens")
    assert tool_event.parent_event_id == llm.id


def test_begun_in_a_given_context_joins_that_run(cap: Capture) -> None:
    with drip.run("wf", customer_id="cus_1") as run:
        ctx = contextvars.copy_context()
    later = begin_later(SPEC, ctx)  # the run has no context here, but ctx still names it
    assert later is not None
    later.end(5)
    [event] = cap.events
    assert event.run_id == run.id


def test_outside_runs_a_usage_record_of_the_customer(cap: Capture) -> None:
    with drip.customer("cus_usage"):
        later = begin()
    later.end(7, {"model": "m"})
    [usage] = cap.usage
    assert (usage.customer_id, usage.usage_type, usage.quantity) == ("cus_usage", "llm_tokens", 7)
    assert (usage.metadata or {})["model"] == "m"


def test_no_customer_follows_the_metered_rule() -> None:
    with capture(strict=True), pytest.raises(DripValidationError, match="customer"):
        begin_later(SPEC)
    with capture(strict=False) as lenient:
        assert begin_later(SPEC) is None
    assert len(lenient.errors) == 1 and lenient.records == []


def test_a_bad_quantity_is_recorded_as_an_error_never_as_a_silent_zero() -> None:
    with capture(strict=False) as cap, drip.run("wf", customer_id="cus_1"):
        begin().end(float("nan"), {"model": "m"})
    [event] = cap.events
    assert (event.quantity, event.outcome, event.error_type) == (0, "error", "DripValidationError")
    assert "nan" in (event.metadata or {})["dripError"]
