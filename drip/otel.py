"""OpenTelemetry: the current span's trace id and span id, read as cheaply as correct allows.

With a valid current span, a run's ``correlation_id`` defaults to the span's trace id (32
lowercase hex, read once when the run starts) and every event carries the span id that was
current when its call began (16 hex). Without OpenTelemetry, or with the API but no SDK and no
span, both stay empty and nothing here costs more than a ``None`` check.

Cost: the public way, ``trace.get_current_span().get_span_context()``, is several Python calls
(~0.2-0.3 us). The current span lives in OpenTelemetry's own ``ContextVar`` under a fixed key,
so the hot path reads it directly (``CV.get().get(KEY)``, two C calls) and keeps the span's
``SpanContext`` (an immutable tuple) in the record; formatting to hex happens on the delivery
worker. ``opentelemetry`` is never imported by drip: until the application imports it, no span
can exist, so ``refresh()`` only looks for it in ``sys.modules``.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

__all__ = [
    "CV", "KEY", "LAST", "context_of", "refresh", "span_context", "span_id", "span_id_hex",
    "trace_id_hex",
]  # fmt: skip


class _ContextLike(Protocol):
    def get(self) -> Any: ...


#: OpenTelemetry's context variable (or a shim with the same ``get``), None until
#: ``opentelemetry.context`` has been imported by the application.
CV: _ContextLike | None = None
#: the key under which OpenTelemetry stores the current span in its context
KEY: str = ""


class _PublicContext:
    """Used when OpenTelemetry runs on a custom runtime context (``OTEL_PYTHON_CONTEXT``)."""

    def __init__(self, get_current: Any) -> None:
        self.get = get_current


def refresh() -> None:
    """Find OpenTelemetry's context once the application has imported it (cheap when done)."""
    global CV, KEY
    if CV is not None or "opentelemetry.context" not in sys.modules:
        return
    try:
        from opentelemetry import context as otel_context
        from opentelemetry.trace.propagation import _SPAN_KEY
    except Exception:  # an API version without these names: no span ids, nothing breaks
        return
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    KEY = _SPAN_KEY
    CV = var if hasattr(var, "get") else _PublicContext(otel_context.get_current)


def span_context() -> Any:
    """The current span's ``SpanContext`` when it is valid, else None."""
    if CV is None:
        refresh()
        if CV is None:
            return None
    span = CV.get().get(KEY)
    if span is None:
        return None
    ctx = span.get_span_context()
    return ctx if ctx.is_valid else None


def context_of(span: Any) -> Any:
    """A span's ``SpanContext`` when it is valid, else None (None for no span)."""
    if span is None:
        return None
    ctx = span.get_span_context()
    return ctx if ctx.is_valid else None


#: the last span whose id ``span_id`` read, and that id (None: not valid). The metered hot path
#: reads the current span object (two C calls) and takes its id from here when it is the same
#: span as last time, the usual case (many calls inside one request's or one agent step's
#: span), instead of the three Python calls of ``get_span_context().is_valid`` / ``.span_id``.
#: One tuple, replaced whole, so threads never pair a span with another span's id; a span's
#: context never changes, and the reference held here keeps its identity from being reused.
LAST: tuple[Any, int | None] = (None, None)


def span_id(span: Any) -> int | None:
    """A span's id as an int (None when not valid), remembered in ``LAST``."""
    global LAST
    ctx = span.get_span_context()
    ident: int | None = ctx.span_id if ctx.is_valid else None
    LAST = (span, ident)
    return ident


def trace_id_hex(ctx: Any) -> str | None:
    """32 lowercase hex digits of a ``SpanContext``'s trace id (None when invalid or absent)."""
    return f"{ctx.trace_id:032x}" if ctx is not None and ctx.is_valid else None


def span_id_hex(ctx: Any) -> str | None:
    """16 lowercase hex digits of a ``SpanContext``'s span id (None when invalid or absent)."""
    return f"{ctx.span_id:016x}" if ctx is not None and ctx.is_valid else None
