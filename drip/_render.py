"""Plain-text views of runs and usage for the CLI (``drip demo``, ``drip timeline``, ...)."""

from __future__ import annotations

from collections import defaultdict

from .models import RunTimeline, TimelineEvent, UsageSummary

__all__ = ["format_ms", "timeline_tree", "usage_table"]


def format_ms(value: float | None) -> str:
    """A duration for people: µs, ms or s; ``-`` when unknown."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 1 else f"{value * 1000:.0f} µs"


def _quantity(value: float) -> str:
    return f"{value:g}"


def _event_line(event: TimelineEvent) -> str:
    parts = [event.event_type, f"x{_quantity(event.quantity)}"]
    if event.units:
        parts[-1] += f" {event.units}"
    parts.append(format_ms(event.duration_ms))
    if event.outcome and event.outcome != "ok":
        parts.append(
            f"{event.outcome.upper()}" + (f" {event.error_type}" if event.error_type else "")
        )
    return "  ".join(parts)


def timeline_tree(timeline: RunTimeline, *, indent: str = "") -> str:
    """The run's header line, then its events as a tree by ``parent_event_id``."""
    head = f"{indent}run {timeline.run_id}  {timeline.workflow_name}  {timeline.status.value}"
    head += f"  {format_ms(timeline.duration_ms)}"
    if timeline.error_code:
        head += f"  {timeline.error_code}: {timeline.error_message or ''}"
    if timeline.correlation_id:
        head += f"  trace={timeline.correlation_id}"
    lines = [head]
    ids = {e.id for e in timeline.events}
    children: dict[str | None, list[TimelineEvent]] = defaultdict(list)
    for event in timeline.events:
        parent = event.parent_event_id if event.parent_event_id in ids else None
        children[parent].append(event)

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, event in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_event_line(event)}")
            walk(event.id, prefix + ("   " if last else "│  "))

    walk(None, indent + "  ")
    return "\n".join(lines)


def usage_table(summary: UsageSummary) -> str:
    """One line per meter: total quantity and where it came from."""
    # ``kind`` tells real meters from event types recorded by ``run.event()``
    rows = [("meter", "kind", "quantity", "usage", "charges", "run events")]
    for m in sorted(summary.meters, key=lambda m: (m.kind != "meter", m.meter)):
        rows.append(
            (
                m.meter,
                m.kind,
                m.quantity_decimal or _quantity(m.quantity),
                str(m.usage_records),
                str(m.charges),
                str(m.run_events),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )
