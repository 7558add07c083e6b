"""drip's compiled parts (``drip/_speedups.c``) against their Python twins.

The compiled metered call must record exactly what the Python wrapper records (same events,
parents, outcomes, span ids, quantities; only ids and times differ) and behave as a function
(attributes, signature, method binding, pickling, weak references, recursion, exceptions with
their traceback). ``pack`` must give the bytes ``drip.models.pack_columns`` gives.

In CI the extension is built (``pip install -e .`` compiles it) and ``.ci/run`` sets
``DRIP_REQUIRE_SPEEDUPS=1``, so ``test_compiled_in_ci`` fails when a build problem would silently
leave users on the slower Python path; ``.ci/run`` also runs the metering tests again with
``DRIP_PURE_PYTHON=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import pickle
import random
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import drip
import drip.testing
from drip._compiled import python_only, speedups
from drip._metered import _wrap
from drip._records import WIDTH, pack_flat
from drip.models import pack_columns, unpack_columns

compiled = pytest.mark.skipif(speedups is None, reason="drip._speedups is not built here")
#: read at import, before conftest's fixture clears every ``DRIP_*`` variable
PURE = python_only()
REQUIRED = bool(os.environ.get("DRIP_REQUIRE_SPEEDUPS"))


def test_compiled_in_ci() -> None:
    """The extension builds wherever CI runs; only DRIP_PURE_PYTHON turns it off."""
    if PURE:
        assert speedups is None and not _wrap.COMPILED
        return
    if not REQUIRED:
        pytest.skip("only .ci/run requires the extension (DRIP_REQUIRE_SPEEDUPS=1)")
    assert speedups is not None and _wrap.COMPILED


def test_the_signal_watch_is_built_on_posix_whatever_the_python_mode() -> None:
    """``drip._sigwatch`` is not a twin of anything (DRIP_PURE_PYTHON leaves it on): without
    it a main thread blocked when SIGTERM came keeps the process alive (see sigwatch)."""
    from drip._delivery import sigwatch

    if not REQUIRED or os.name != "posix":
        pytest.skip("only .ci/run requires the extensions (DRIP_REQUIRE_SPEEDUPS=1)")
    assert sigwatch._sigwatch is not None


# -- pack -----------------------------------------------------------------------------------


def _flat(rows: list[tuple[int, int, int]]) -> list[Any]:
    flat: list[Any] = []
    for seq, t0, t1 in rows:
        flat += (0, "head", "tail", None, seq, t0, t1, None)
    return flat


def _reference(flat: list[Any], base: int) -> str:
    seq, t0, t1 = flat[4::WIDTH], flat[5::WIDTH], flat[6::WIDTH]
    return pack_columns(seq, [t + base for t in t0], [t + base for t in t1])


@compiled
@pytest.mark.parametrize("base", [0, 1, 7_000_000_000_000, -(2**40)])
def test_pack_is_pack_columns(base: int) -> None:
    rnd = random.Random(base)
    for n in (1, 2, 3, 17, 1000):
        rows = [
            (rnd.randrange(2**40), rnd.randrange(2**50), rnd.randrange(2**50)) for _ in range(n)
        ]
        flat = _flat(rows)
        assert pack_flat(flat, base) == _reference(flat, base)
        seq, t0, t1 = unpack_columns(pack_flat(flat, base))
        assert seq == [r[0] for r in rows]
        assert t0 == [r[1] + base for r in rows] and t1 == [r[2] + base for r in rows]


@compiled
def test_pack_extremes_and_refusals() -> None:
    top = 2**63 - 1
    flat = _flat([(0, top, -(2**63)), (1, 0, 0)])
    assert speedups.pack(flat, WIDTH, 4, 5, 6, 0) == bytes.fromhex(
        "0000000000000000" "0100000000000000" "ffffffffffffff7f" "0000000000000000"
        "0000000000000080" "0000000000000000"
    )  # fmt: skip
    with pytest.raises(OverflowError):
        speedups.pack(flat, WIDTH, 4, 5, 6, 1)  # top + 1
    with pytest.raises(OverflowError):
        speedups.pack(_flat([(0, 2**64, 0)]), WIDTH, 4, 5, 6, 0)
    with pytest.raises(ValueError, match="not an int"):
        speedups.pack(_flat([(0, 1.5, 0)]), WIDTH, 4, 5, 6, 0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="whole records"):
        speedups.pack([0, 1, 2], WIDTH, 4, 5, 6, 0)
    with pytest.raises(TypeError):
        speedups.pack((0,) * WIDTH, WIDTH, 4, 5, 6, 0)
    assert speedups.pack([], WIDTH, 4, 5, 6, 0) == b""


@compiled
def test_clock_is_perf_counter_ns() -> None:
    for _ in range(1000):
        a = time.perf_counter_ns()
        b = speedups.clock_ns()
        c = time.perf_counter_ns()
        assert a <= b <= c


# -- the metered call: compiled and Python side by side ----------------------------------------


@pytest.fixture
def python_wrappers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``metered`` whose wrappers are built while the compiled ones are switched off."""

    def metered(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        decorate = drip.metered(*args, **kwargs)

        def apply(fn: Any) -> Any:
            with monkeypatch.context() as m:
                m.setattr(_wrap, "_MeteredFunction", None)
                m.setattr(_wrap, "_begin", None)
                return decorate(fn)

        return apply

    yield metered


def _script(metered: Callable[..., Any]) -> list[Any]:
    """Every path of a metered call, recorded; the events made comparable."""

    @metered("inner", quantity=2)
    def inner(x: int) -> int:
        return x * 2

    @metered("outer", quantity=3)
    def outer(x: int, *, twice: bool = False) -> int:
        return inner(x) + (inner(x) if twice else 0)

    @metered("fails")
    def fails() -> None:
        raise KeyError("boom")

    @metered("handle")
    def handle() -> int:
        drip.current_event().set_metadata(found=1)  # type: ignore[attr-defined]
        return 1

    @metered("coro", quantity=5)
    async def coro(x: int) -> int:
        await asyncio.sleep(0)
        return inner(x)

    @metered("coro_fails")
    async def coro_fails() -> None:
        raise ValueError("async boom")

    async def async_part() -> None:
        await coro(1)
        await coro(2)
        with pytest.raises(ValueError):
            await coro_fails()
        await coro(3)

    with drip.testing.capture() as cap:
        with drip.customer("cus_speed"):
            outer(0)  # outside a run: usage
        with drip.run("speedups", customer_id="cus_speed"):
            for i in range(3):
                assert outer(i, twice=i == 1) == 2 * i * (2 if i == 1 else 1)
            with pytest.raises(KeyError):
                fails()
            assert outer(5) == 10
            assert handle() == 1
            outer(6)
            asyncio.run(async_part())
            outer(7)
    events = cap.events
    index = {e.id: i for i, e in enumerate(events)}
    shape = [
        (e.meter, e.quantity, e.outcome, e.error_type, index.get(e.parent_event_id or ""),
         e.metadata, e.duration_ms is not None and e.duration_ms >= 0)
        for e in events
    ]  # fmt: skip
    return [[u.usage_type for u in cap.usage], shape]


@compiled
def test_compiled_records_what_python_records(python_wrappers: Callable[..., Any]) -> None:
    assert _script(drip.metered) == _script(python_wrappers)


@compiled
def test_compiled_records_span_ids_like_python(python_wrappers: Callable[..., Any]) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace

    tracer = sdk.TracerProvider().get_tracer("speedups")
    seen = []
    for metered in (drip.metered, python_wrappers):

        @metered("spanned")
        def spanned() -> None:
            pass

        with drip.testing.capture() as cap, drip.run("spans", customer_id="cus_speed"):
            spanned()
            with tracer.start_as_current_span("a") as a:
                spanned()
                spanned()
            with tracer.start_as_current_span("b") as b:
                spanned()
            spanned()
        ids = {f"{s.get_span_context().span_id:016x}": n for n, s in (("a", a), ("b", b))}
        seen.append([ids.get(e.span_id or "", e.span_id) for e in cap.events])
        assert trace.get_current_span() is trace.INVALID_SPAN
    assert seen[0] == seen[1] == [None, "a", "a", "b", None]


# -- the compiled object behaves as a function ------------------------------------------------


@drip.metered("pickled")
def pickled(x: int) -> int:
    """Doubles x."""
    return 2 * x


@compiled
def test_function_attributes_signature_pickle_weakref() -> None:
    assert type(pickled).__name__ == "MeteredFunction"
    assert pickled.__name__ == "pickled" and pickled.__doc__ == "Doubles x."
    assert pickled.__qualname__ == "pickled" and pickled.__module__ == __name__
    assert inspect.signature(pickled) == inspect.signature(pickled.__wrapped__)  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(pickled)) is pickled
    assert weakref.ref(pickled)() is pickled
    assert "pickled" in repr(pickled)
    assert pickled(x=4) == 8 and not inspect.iscoroutinefunction(pickled)


@compiled
def test_methods_bind_like_functions() -> None:
    class Agent:
        def __init__(self, k: int) -> None:
            self.k = k

        @drip.metered("method")
        def step(self, x: int) -> int:
            return self.k * x

        @drip.metered("static")
        @staticmethod
        def static(x: int) -> int:
            return x + 1

        @drip.metered("cls")
        @classmethod
        def make(cls, k: int) -> Agent:
            return cls(k)

    with drip.testing.capture() as cap, drip.run("methods", customer_id="cus_speed"):
        agent = Agent.make(3)
        assert agent.step(2) == 6 and Agent.step(agent, 3) == 9
        assert agent.static(1) == 2 and Agent.static(2) == 3
        assert functools.partial(agent.step, 5)() == 15
    assert [e.meter for e in cap.events] == ["cls", "method", "method", "static", "static",
                                              "method"]  # fmt: skip


@compiled
def test_exception_keeps_its_traceback_and_recursion_works() -> None:
    @drip.metered("deep")
    def deep(n: int) -> int:
        if n == 0:
            raise RuntimeError("bottom")
        return deep(n - 1)

    with drip.testing.capture() as cap, drip.run("deep", customer_id="cus_speed"):  # noqa: SIM117
        with pytest.raises(RuntimeError) as info:
            deep(50)
    frames = [f.name for f in info.traceback]
    assert frames.count("deep") == 51
    assert [e.outcome for e in cap.events].count("error") == 51
    limit = sys.getrecursionlimit()

    @drip.metered("endless")
    def endless() -> None:
        endless()

    with drip.testing.capture(), drip.run("endless", customer_id="cus_speed"):  # noqa: SIM117
        with pytest.raises(RecursionError):
            endless()
    assert sys.getrecursionlimit() == limit


@compiled
def test_no_reference_leaks_on_any_path(python_wrappers: Callable[..., Any]) -> None:
    """Every path of the compiled call gives back each reference it takes: the arguments and
    functions end as they began, and the run gains exactly what the Python twin's records
    hold (an error's and a handle's record refer to their run; fast records do not)."""
    growth = []
    for metered in (drip.metered, python_wrappers):
        arg, kwarg = object(), object()

        @metered("leak")
        def ok(a: object, *, k: object) -> object:
            return a

        @metered("leak")
        def raises(a: object, *, k: object) -> object:
            raise LookupError

        @metered("leak")
        def handle(a: object, *, k: object) -> object:
            drip.current_event().add(1)
            return a

        @metered("leak")
        async def coro(a: object, *, k: object) -> object:
            return a

        def calls(a: object = arg, kw: object = kwarg) -> None:
            for _ in range(200):
                ok(a, k=kw)
                with contextlib.suppress(LookupError):
                    raises(a, k=kw)
                handle(a, k=kw)
                asyncio.run(coro(a, k=kw))

        watched = [arg, kwarg, ok, raises, handle, coro]
        with drip.testing.capture(), drip.run("leaks", customer_id="cus_speed") as run:
            calls()  # warm: the run's fast path is open, caches are filled
            before = [sys.getrefcount(o) for o in watched]
            run_before = sys.getrefcount(run)
            calls()
            assert [sys.getrefcount(o) for o in watched] == before
            growth.append(sys.getrefcount(run) - run_before)
    assert growth[0] == growth[1] == 400


# -- request records -------------------------------------------------------------------------


def _request_records(rnd: random.Random) -> Iterator[tuple[Any, ...]]:
    from http import HTTPStatus

    from drip._checks import ExternalId
    from drip._records import REQUEST_END, REQUEST_EVENT, REQUEST_START, request_parts

    texts = ["cus_1", "acme", 'a"quote', "back\\slash", "tab\there", "ünï", "😀", "\x7f", "",
             "x" * 300]  # fmt: skip
    for _ in range(3000):
        seq = rnd.choice([1, 2**40 - 1, 2**40 + 5, rnd.randrange(2**62)])
        parts = request_parts(
            rnd.choice(["GET /items/{item_id}", 'POST /"q"', "GET /ü"]), "api_calls",
            rnd.choice([1, 2.5, None]), "/items/{item_id}", "GET", rnd.random() < 0.3,
        )  # fmt: skip
        t = rnd.choice([0, 1, 10**9 - 1, rnd.randrange(10**18), 7 * 10**15 + 999])
        text = rnd.choice(texts)
        customer = ExternalId(text) if rnd.random() < 0.3 else text
        maybe = rnd.choice([None, None, text])
        yield (REQUEST_START, seq, customer, parts, maybe, rnd.choice([None, text]), t, None)
        status = rnd.choice([None, 200, 404, 503, -(2**63), 2**63 - 1, HTTPStatus.OK, True])
        span = rnd.choice([None, 0, 1, 2**63, 2**64 - 1, rnd.randrange(2**64)])
        duration = rnd.choice([0, 1, 999, -5, 2**53, 2**53 + 1, rnd.randrange(10**12)])
        yield (REQUEST_EVENT, seq, parts, maybe, t, status, duration, span)
        end = rnd.choice(["COMPLETED", "FAILED", "CANCELLED"])
        yield (REQUEST_END, seq, end, rnd.choice([None, "KeyError"]), maybe, t, None, None)


@compiled
@pytest.mark.parametrize("offset", [0, 1_764_000_000 * 10**9 + 123_456_789, -(10**9) - 1])
def test_request_records_encode_as_python_does(offset: int) -> None:
    from drip._records import _REQUEST_ENCODERS, Clock, encode

    clock = Clock()
    clock._offset = offset
    rnd = random.Random(offset)
    seen = 0
    for rec in _request_records(rnd):
        assert encode(rec, clock) == _REQUEST_ENCODERS[rec[0]](rec, clock), rec
        seen += 1
    assert seen == 9000


@compiled
def test_the_usual_request_records_are_compiled() -> None:
    """A plain request's three records are written in C (None would mean: left to Python)."""
    from drip._checks import ExternalId
    from drip._records import (
        _SEQ_MASK,
        REQUEST_END,
        REQUEST_EVENT,
        REQUEST_START,
        dumps,
        request_parts,
    )
    from drip._records import _prefix as prefix

    parts = request_parts("GET /items/{item_id}", "api_calls", 1, "/items/{item_id}", "GET", False)
    t = time.perf_counter_ns()
    records = [
        (REQUEST_START, 7, "cus_1", parts, None, None, t, None),
        (REQUEST_EVENT, 7, parts, None, t, 200, 1234, 2**64 - 1),
        (REQUEST_END, 7, "COMPLETED", None, None, t, None, None),
    ]
    for rec in records:
        assert speedups.encode_request(rec, prefix, 0, _SEQ_MASK, dumps, ExternalId) is not None


@compiled
def test_a_slice_of_request_records_encodes_as_one_by_one() -> None:
    from drip._checks import ExternalId
    from drip._records import _SEQ_MASK, Clock, dumps, encode, encode_requests
    from drip._records import _prefix as prefix

    clock = Clock()
    every = list(_request_records(random.Random(9)))
    compiled = [r for r in every if speedups.encode_request(r, prefix, 0, _SEQ_MASK, dumps,
                                                             ExternalId) is not None]  # fmt: skip
    assert len(compiled) > len(every) // 2
    flat = [x for rec in compiled for x in rec]
    assert encode_requests(flat, clock) == [encode(rec, clock) for rec in compiled]
    assert encode_requests([], clock) == []
    fast = (0, '"runId":"run_x"', ',"eventType":"m"', None, 1, 2, 3, None)
    assert encode_requests(flat[:16] + list(fast) + flat[16:24], clock) is None
    left = next(r for r in every if r not in compiled)  # a shape left to Python
    assert encode_requests(flat[:16] + list(left), clock) is None
