"""``drip usage``: totals per meter, or grouped (``--by customer,meter``) over a time window.

A table for people; ``--json`` and ``--csv`` print the same rows for scripts.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from decimal import Decimal
from typing import Any

from ._common import CommandError, client, console

__all__ = ["add"]

GROUPS = ("meter", "customer", "workflow", "day", "hour", "model")


def _group_by(text: str | None) -> list[str]:
    if not text:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in GROUPS]
    if bad:
        raise CommandError(f"--by: unknown {bad}; choose from {', '.join(GROUPS)}")
    return names


def _rows(summary: Any) -> list[dict[str, Any]]:
    """The summary as flat rows (camelCase keys, as on the wire)."""
    body = summary.model_dump(mode="json", by_alias=True, exclude_none=True)
    groups = body.get("groups")
    if isinstance(groups, list):
        return [{**(g.pop("key", None) or {}), **g} for g in groups]
    return list(body.get("meters") or [])


def _columns(rows: list[dict[str, Any]], by: list[str]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    first = [k for k in keys if k in by or k in ("customerId", "externalCustomerId", "meter")]
    order = {"customerId": "customer", "externalCustomerId": "customer"}

    def rank(key: str) -> int:
        group = order.get(key, key)
        return by.index(group) if group in by else len(by)

    first.sort(key=rank)
    return first + [k for k in keys if k not in first]


def _number(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{Decimal(str(value)).normalize():f}"
    return "" if value is None else str(value)


def _usage(args: argparse.Namespace) -> int:
    by = _group_by(args.by)
    query: dict[str, Any] = {"customer_id": args.customer, "meter": args.meter}
    extra = {"since": args.since, "until": args.until, "group_by": by or None}
    query.update({k: v for k, v in extra.items() if v})
    with client() as drip:
        summary = drip.get_usage_summary(**query)
    rows = _rows(summary)
    columns = _columns(rows, by)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    from rich.table import Table

    window = f"{args.since or 'the beginning'} → {args.until or 'now'}"
    table = Table(title=f"usage, {window}", box=None, header_style="bold", title_justify="left")
    for name in columns:
        numeric = any(isinstance(r.get(name), (int, float)) for r in rows)
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(_number(row.get(c)) for c in columns))
    out = console()
    out.print(table if rows else "no usage in this window")
    return 0


def add(commands: Any) -> None:
    usage = commands.add_parser("usage", help="usage totals, by meter, customer, day ...")
    usage.add_argument("--customer", help="one customer (cus_… or your own id)")
    usage.add_argument("--meter", help="one meter")
    usage.add_argument("--since", help="from (ISO 8601, inclusive), e.g. 2026-12-01")
    usage.add_argument("--until", help="to (ISO 8601, exclusive)")
    usage.add_argument("--by", metavar="GROUPS", help=f"comma-separated: {', '.join(GROUPS)}")
    fmt = usage.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="rows as JSON")
    fmt.add_argument("--csv", action="store_true", help="rows as CSV")
    usage.set_defaults(handler=_usage)
