"""``drip runs`` (a table of runs, newest first, with filters) and ``drip timeline RUN``."""

from __future__ import annotations

import argparse
from typing import Any

from .._render import format_ms, timeline_tree
from ._common import client, console

__all__ = ["add"]


def _first(*values: Any) -> Any:
    """The first value that is not None (a run of 0 ms or 0 events shows 0, not "-")."""
    return next((v for v in values if v is not None), None)


def _run_duration(ms: float | None) -> str:
    """A run's duration (whole milliseconds, as the server gives it) for people: a run under
    a millisecond is "< 1 ms" (was "0 µs", a precision the value does not have); minutes and
    hours past a minute (was "7200.00 s")."""
    if ms is None:
        return "-"
    if ms < 1:
        return "< 1 ms"
    if ms < 60_000:
        return format_ms(ms)
    return f"{ms / 60_000:.1f} min" if ms < 3_600_000 else f"{ms / 3_600_000:.1f} h"


def _runs(args: argparse.Namespace) -> int:
    from rich.table import Table

    filters = {
        "customer_id": args.customer,
        "workflow": args.workflow,
        "status": args.status,
        "since": args.since,
        "until": args.until,
        "cursor": args.cursor,
    }
    wanted = {k: v for k, v in filters.items() if v is not None}
    with client() as drip:
        page = drip.list_runs(limit=args.limit, **wanted)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (
        ("RUN", "left"),
        ("WORKFLOW", "left"),
        ("CUSTOMER", "left"),
        ("STATUS", "left"),
        ("STARTED", "left"),
        ("DURATION", "right"),
        ("EVENTS", "right"),
    ):
        # in a narrow terminal the names (your own, up to 256 characters) wrap; ids, times and
        # numbers are never cut or dropped
        names = name in ("WORKFLOW", "CUSTOMER")
        table.add_column(name, justify=justify, no_wrap=not names, overflow="fold")  # type: ignore[arg-type]
    for run in page.data:
        extra = run.model_extra or {}
        started = getattr(run, "started_at", None) or extra.get("startedAt") or run.created_at
        duration = _first(getattr(run, "duration_ms", None), extra.get("durationMs"))
        events = _first(getattr(run, "event_count", None), extra.get("eventCount"))
        external = getattr(run, "external_customer_id", None) or extra.get("externalCustomerId")
        who = f"{external} ({run.customer_id})" if external else run.customer_id
        name = ("  ↳ " if run.parent_run_id else "") + run.id
        table.add_row(
            name,
            run.workflow_name,
            who,
            run.status.value,
            str(started).replace("T", " ")[:19],
            _run_duration(duration),
            "-" if events is None else str(events),
        )
    out = console()
    if not page.data:
        out.print("no runs match")
        return 0
    out.print(table)
    cursor = getattr(page, "next_cursor", None) or (page.model_extra or {}).get("nextCursor")
    if cursor:
        out.print(f"more: drip runs --cursor {cursor} (same filters)", style="dim")
    return 0


def _timeline(args: argparse.Namespace) -> int:
    with client() as drip:
        print(timeline_tree(drip.get_run_timeline(args.run_id)))
    return 0


def add(commands: Any) -> None:
    runs = commands.add_parser("runs", help="list runs (newest first)")
    runs.add_argument("--customer", help="only this customer's runs (cus_… or your own id)")
    runs.add_argument("--workflow", help="only runs of this workflow (id or slug)")
    runs.add_argument(
        "--status",
        type=str.upper,  # `--status failed` as people type it
        help="RUNNING, COMPLETED, FAILED, CANCELLED or TIMEOUT (any case)",
    )
    runs.add_argument("--since", help="started at or after (ISO 8601, e.g. 2026-12-01)")
    runs.add_argument("--until", help="started before (ISO 8601)")
    runs.add_argument("--limit", type=int, default=20, help="rows (default 20)")
    runs.add_argument("--cursor", help="the next page (printed under a full page)")
    runs.set_defaults(handler=_runs)
    timeline = commands.add_parser("timeline", help="show a run's events as a tree")
    timeline.add_argument("run_id")
    timeline.set_defaults(handler=_timeline)
