"""OpenTelemetry ids on runs and events, checked against the real SDK's finished spans."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from drip import instrument as drip
from drip import otel
from drip.testing import Capture, capture


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    yield exp
    exp.clear()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    provider = TracerProvider()  # not installed globally: spans still become current
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


@drip.metered("llm")
def llm() -> None:
    pass


def _hex(exporter: InMemorySpanExporter) -> dict[str, tuple[str, str]]:
    return {
        s.name: (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}")
        for s in exporter.get_finished_spans()
    }


def test_run_correlation_is_the_trace_id_and_events_carry_span_ids(
    tracer: trace.Tracer, exporter: InMemorySpanExporter, cap: Capture
) -> None:
    with tracer.start_as_current_span("request"), drip.run("wf", customer_id="c") as run:
        llm()
        with tracer.start_as_current_span("tool"):
            llm()
        run.event("note")
    spans = _hex(exporter)
    trace_id, request_span = spans["request"]
    assert run.correlation_id == trace_id and len(trace_id) == 32
    assert cap.run_starts[0].correlation_id == trace_id
    first, second, note = cap.events
    assert (first.span_id, first.correlation_id) == (request_span, trace_id)
    assert second.span_id == spans["tool"][1] and second.correlation_id == trace_id
    assert note.span_id == request_span


def test_explicit_correlation_id_wins_and_is_inherited(
    tracer: trace.Tracer, exporter: InMemorySpanExporter, cap: Capture
) -> None:
    with (
        tracer.start_as_current_span("request"),
        drip.run("wf", customer_id="c", correlation_id="req-42") as run,
        drip.run("child") as child,
    ):
        llm()
    assert run.correlation_id == "req-42" and child.correlation_id == "req-42"
    [event] = cap.events
    assert event.correlation_id == "req-42" and event.span_id == _hex(exporter)["request"][1]


def test_generator_event_takes_the_span_current_when_iteration_starts(
    tracer: trace.Tracer, exporter: InMemorySpanExporter, cap: Capture
) -> None:
    @drip.metered("stream")
    def stream() -> Iterator[int]:
        yield 1

    with drip.run("wf", customer_id="c"):
        gen = stream()
        with tracer.start_as_current_span("consume"):
            assert list(gen) == [1]
    assert cap.events[0].span_id == _hex(exporter)["consume"][1]


def test_usage_records_get_the_trace_id_and_span_id(
    tracer: trace.Tracer, exporter: InMemorySpanExporter, cap: Capture
) -> None:
    with tracer.start_as_current_span("request"), drip.customer("c"):
        llm()
    trace_id, span_id = _hex(exporter)["request"]
    [usage] = cap.usage
    assert usage.correlation_id == trace_id
    assert usage.metadata is not None and usage.metadata["drip"]["spanId"] == span_id


def test_without_a_span_the_fields_stay_empty(cap: Capture) -> None:
    with drip.run("wf", customer_id="c") as run:
        llm()
    assert run.correlation_id is None
    [event] = cap.events
    assert event.span_id is None and event.correlation_id is None
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert otel.span_context() is None


def test_invalid_current_span_is_ignored(cap: Capture) -> None:
    with trace.use_span(trace.INVALID_SPAN), drip.run("wf", customer_id="c") as run:
        llm()
    assert run.correlation_id is None and cap.events[0].span_id is None


def test_fast_read_matches_the_public_api(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("a") as span:
        assert otel.span_context() is span.get_span_context()
        assert otel.span_context() == trace.get_current_span().get_span_context()
    assert otel.span_context() is None


def test_custom_runtime_context_falls_back_to_the_public_api(
    tracer: trace.Tracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otel, "CV", otel._PublicContext(otel_context.get_current))
    with tracer.start_as_current_span("a") as span:
        assert otel.span_context() == span.get_span_context()


def test_without_opentelemetry_imported_nothing_imports_it() -> None:
    code = textwrap.dedent(
        """
        import sys
        from drip import instrument as drip
        from drip.testing import capture

        @drip.metered("m")
        def f():
            return 1

        with capture() as cap, drip.run("wf", customer_id="c") as run:
            f()
        event = cap.events[0]
        assert event.span_id is None and run.correlation_id is None, event
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    # pydantic loads installed plugins on import (logfire, in the [bench] extra, registers one
    # that imports OpenTelemetry): not drip's doing, so plugins are off for this check
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_span_ids_follow_the_current_span_from_call_to_call_and_thread_to_thread(
    tracer: trace.Tracer, exporter: InMemorySpanExporter, cap: Capture
) -> None:
    """The hot path takes a span's id from the last span it read when it is the same span:
    alternating spans, and threads each in their own, still give every event its own span."""
    import threading

    from drip.context import wrap

    def steps(name: str) -> None:
        for i in range(50):
            with tracer.start_as_current_span(f"{name}{i % 2}-{i}"):
                llm()
                llm()

    with drip.run("wf", customer_id="c"):
        llm()  # the run's first call takes the general path
        threads = [threading.Thread(target=wrap(steps), args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        steps("c")
        for t in threads:
            t.join()
    ids = {f"{s.context.span_id:016x}": s.name for s in exporter.get_finished_spans()}
    seen = [ids[e.span_id] for e in cap.events[1:] if e.span_id is not None]
    assert len(seen) == 300
    assert sorted(seen) == sorted(f"{n}{i % 2}-{i}" for n in "abc" for i in range(50) for _ in "xy")
