"""OpenTelemetry: the run's correlation_id is the trace id, each event carries its span id.

Run: DRIP_BASE_URL=local python examples/otel_correlation.py  (needs opentelemetry-sdk)
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import drip

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("example")


@drip.metered(meter="tool_calls")
def tool() -> None:
    with tracer.start_as_current_span("inner-work"):
        pass


def main() -> None:
    customer = drip.drip.create_customer(external_customer_id="example-otel")
    with tracer.start_as_current_span("handle-request") as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
        span_id = f"{span.get_span_context().span_id:016x}"
        with drip.run(workflow="traced-agent", customer_id=customer.id) as run:
            tool()
    drip.flush(timeout=10)
    timeline = drip.drip.get_run_timeline(run.id)
    print(f"trace id        {trace_id}")
    print(f"correlation id  {timeline.correlation_id}")
    print(f"span id         {span_id}")
    print(f"event span id   {timeline.events[0].span_id}")
    assert timeline.correlation_id == trace_id and timeline.events[0].span_id == span_id


if __name__ == "__main__":
    main()
