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
    """The summary as flat rows (camelCase keys, as on the wire); quantities exact."""
    body = summary.model_dump(mode="json", by_alias=True, exclude_none=True)
    if body.get("groupBy"):
        return list(body.get("groups") or [])
    rows = list(body.get("meters") or [])
    for row in rows:
        row["quantity"] = row.pop("quantityDecimal", None) or row["quantity"]
    return rows


#: the wire key of each grouping, in the order of ``--by``
_KEYS = {"customer": "customerId", "workflow": "workflowId"}
_TAIL = ("kind", "quantity", "amountUsdc", "usageRecords", "charges", "runEvents")


def _columns(rows: list[dict[str, Any]], by: list[str]) -> list[str]:
    dims = [_KEYS.get(g, g) for g in by] or ["meter"]
    if "customerId" in dims:
        dims.insert(dims.index("customerId") + 1, "externalCustomerId")
    if "workflowId" in dims:
        dims.insert(dims.index("workflowId") + 1, "workflow")
    if not rows:  # a header all the same: a script reading the CSV finds its columns
        return [*dims, *_TAIL]
    present = {k for row in rows for k in row}
    return [c for c in (*dims, *_TAIL) if c in present]


def _name_customers(drip: Any, summary: Any, rows: list[dict[str, Any]]) -> None:
    """Add each customer's own id beside Drip's. The summary names them (a server of this
    release); from an older one, the customers are listed until every row's is found."""
    groups = summary.groups or []
    wanted = {row["customerId"] for row in rows if "customerId" in row}
    if not wanted or all("external_customer_id" in g.model_fields_set for g in groups):
        return
    names: dict[str, str | None] = {}
    offset = 0
    while not wanted <= names.keys():
        page = drip.list_customers(limit=1000, offset=offset)
        names.update({c.id: c.external_customer_id for c in page.data})
        offset += len(page.data)
        if len(page.data) < 1000:
            break
    for row in rows:
        if names.get(row.get("customerId", "")):
            row["externalCustomerId"] = names[row["customerId"]]


def _name_workflows(drip: Any, rows: list[dict[str, Any]]) -> None:
    """Add each workflow's name beside its ``wf_…`` id (the summary gives the id alone, which
    said nothing to a person reading ``--by workflow``): one request for the account's list."""
    if not any(row.get("workflowId") for row in rows):
        return
    names = {w.id: w.slug for w in drip.list_workflows().data}
    for row in rows:
        if names.get(row.get("workflowId", "")):
            row["workflow"] = names[row["workflowId"]]


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
        _name_customers(drip, summary, rows)
        _name_workflows(drip, rows)
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
        numeric = name in _TAIL[1:]
        # names (your own ids, meters, models) wrap in a narrow terminal; ids and numbers never
        names = name in ("externalCustomerId", "workflow", "meter", "model")
        table.add_column(
            name, justify="right" if numeric else "left", no_wrap=not names, overflow="fold"
        )
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
