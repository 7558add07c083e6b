"""``drip.context``: the one ContextVar, and carrying it into threads, executors and tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from drip import instrument as drip
from drip.context import (
    EMPTY,
    SCOPE,
    ContextThreadPoolExecutor,
    current_customer_id,
    current_run,
    wrap,
)
from drip.testing import Capture, capture


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c
    assert SCOPE.get() == EMPTY


@drip.metered("in.thread")
def step(label: str) -> str:
    run = current_run()
    return f"{label}:{run.id if run else None}"


def test_current_run_and_customer() -> None:
    assert current_run() is None and current_customer_id() is None
    with capture(), drip.customer("cus_a"):
        assert current_customer_id() == "cus_a"
        with drip.run("wf") as run:
            assert current_run() is run and current_customer_id() == "cus_a"
        assert current_run() is None
    assert current_customer_id() is None


def test_plain_thread_does_not_inherit_but_wrap_carries_it(cap: Capture) -> None:
    results: list[str] = []
    with drip.run("wf", customer_id="c") as run:
        plain = threading.Thread(target=lambda: results.append(str(current_run())))
        plain.start()
        plain.join()
        carried = threading.Thread(target=wrap(lambda: results.append(step("t"))))
        carried.start()
        carried.join()
    assert results == ["None", f"t:{run.id}"]
    assert [e.run_id for e in cap.events] == [run.id]


def test_a_call_in_a_thread_that_lost_its_run_says_how_to_carry_it() -> None:
    with capture(strict=False) as cap, drip.run("wf", customer_id="c") as run:
        with ThreadPoolExecutor(2) as pool:  # a plain pool: its threads begin empty
            list(pool.map(step, ["a", "b"]))
        step("main")
    assert [e.run_id for e in cap.events] == [run.id]
    said = [str(e) for e in cap.errors]
    assert len(said) == 2 and all("drip.context.ContextThreadPoolExecutor" in s for s in said)
    with capture(strict=False) as main_thread:
        step("no run")
    (problem,) = main_thread.errors
    assert "without a customer" in str(problem) and "drip.context" not in str(problem)


def test_wrapped_function_can_run_concurrently_and_does_not_leak_back(cap: Capture) -> None:
    barrier = threading.Barrier(4)

    def body() -> str:
        barrier.wait(5)  # four threads inside the same captured context at once
        with drip.customer("changed"):
            pass
        return step("x")

    with drip.run("wf", customer_id="c") as run:
        fn = wrap(body)
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: fn(), range(4))) == [f"x:{run.id}"] * 4
        assert current_customer_id() == "c"
    assert len(cap.events) == 4


def test_context_thread_pool_executor_submit_map_and_run_in_executor(cap: Capture) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        with ContextThreadPoolExecutor(2) as pool:
            async with drip.run("wf", customer_id="c") as run:
                first = pool.submit(step, "submit").result()
                second = list(pool.map(step, ["map"]))
                third = await loop.run_in_executor(pool, step, "loop")
                fourth = await loop.run_in_executor(None, wrap(step), "default")
                fifth = await asyncio.to_thread(step, "to_thread")  # native
        assert run.id in first
        return [first, *second, third, fourth, fifth]

    results = asyncio.run(main())
    run_ids = {r.split(":")[1] for r in results}
    assert len(run_ids) == 1 and "None" not in run_ids
    assert len(cap.events) == 5 and {e.run_id for e in cap.events} == run_ids


def test_pool_threads_do_not_keep_a_previous_context(cap: Capture) -> None:
    with ContextThreadPoolExecutor(1) as pool:
        with drip.run("wf", customer_id="c"):
            pool.submit(step, "in").result()
        assert pool.submit(lambda: current_run()).result() is None


async def test_tasks_inherit_and_are_isolated(cap: Capture) -> None:
    async def agent(i: int) -> str:
        async with drip.run(f"agent-{i}", customer_id=f"cus_{i}") as run:
            await asyncio.sleep(0.01)
            assert current_run() is run and current_customer_id() == f"cus_{i}"
            return run.id

    async with drip.run("outer", customer_id="cus_outer") as outer:
        child_ids = await asyncio.gather(*(agent(i) for i in range(5)))
        assert current_run() is outer
    starts = {s.id: s for s in cap.run_starts}
    assert all(starts[i].parent_run_id == outer.id for i in child_ids)
    assert [starts[i].customer_id for i in child_ids] == [f"cus_{i}" for i in range(5)]


def test_scope_tuples_are_immutable_snapshots() -> None:
    with capture(), drip.customer("a"):
        scope = SCOPE.get()
        with drip.customer("b"):
            assert SCOPE.get()[0] == "b"
        assert SCOPE.get() is scope and scope[0] == "a"


def test_a_run_left_in_another_context_does_not_touch_this_one(cap: Capture) -> None:
    import contextvars

    def plain_generator() -> Iterator[int]:
        with drip.run("wf", customer_id="c"):
            yield 1
            yield 2

    gen = plain_generator()
    other = contextvars.copy_context()
    assert other.run(next, gen) == 1  # the run is entered in the other context
    assert other.run(current_run) is not None and current_run() is None
    with drip.customer("mine"):
        gen.close()  # the run ends here, in this context: its token does not belong here
        assert current_customer_id() == "mine" and current_run() is None
    [end] = cap.run_ends
    assert end.status.value == "CANCELLED" and end.error_code == "GeneratorExit"
