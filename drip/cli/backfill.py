"""``drip import FILE.csv|FILE.jsonl``: backfill historical usage records.

Each row becomes one ``usage`` item of the ingest batch endpoint, with an id derived from the
row itself (its fields, plus how many identical rows came before it in the file), so a re-run
after an interruption, or of the same file, stores nothing twice: the server answers the rows
it already holds as duplicates. A row's own ``idempotency_key`` column, when present, wins.

Columns (CSV header or JSON keys, snake_case or camelCase): ``customer_id`` or
``external_customer_id``, ``meter`` (or ``usage_type``), ``quantity``, ``timestamp`` (ISO 8601;
a date alone is midnight UTC), and optionally ``units``, ``description``, ``idempotency_key``,
``metadata`` (a JSON object; in CSV also ``metadata.<name>`` columns). Files are UTF-8 (a
leading byte-order mark is fine); one that is not is refused before anything is sent.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._common import CommandError, client, console

__all__ = ["add", "row_item"]

BATCH = 500
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class RowError(ValueError):
    """A row that cannot be imported; the message says why."""


@dataclass
class Tally:
    imported: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line number, row) for each data row; a row that cannot be read is a RowError."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, RowError(f"not JSON: {exc.msg}")
                    continue
                yield number, row if isinstance(row, dict) else RowError("not a JSON object")
    elif path.suffix.lower() == ".csv":
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would
        # otherwise be part of the first column's name
        with path.open(encoding="utf-8-sig", newline="") as stream:
            reader = csv.DictReader(stream)
            for row in reader:
                # more values than the header has names: csv files them under None, and
                # dropping them would import `user,api,1,000` as a quantity of 1
                extra = [v for v in row.pop(None, None) or () if v.strip()]
                if extra:
                    names = len(reader.fieldnames or ())
                    yield (
                        reader.line_num,
                        RowError(
                            f"{names + len(extra)} values but the header names {names} columns "
                            f"(unnamed: {', '.join(map(repr, extra[:3]))}); "
                            'quote a value that holds a comma ("1,000")'
                        ),
                    )
                    continue
                # `a, b, c` as people type it: spaces around names and values are layout, not
                # data (` api` was a meter of its own, and ` meter` left every row without one)
                clean = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                yield reader.line_num, {k: v for k, v in clean.items() if k and v}
    else:
        raise CommandError(f"{path}: expected a .csv or .jsonl file")


def _not_utf8(path: Path) -> str:
    """Where a file stops being UTF-8 text, in words."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {number} is not UTF-8 text (byte {line[exc.start]:#04x})"
    return "not UTF-8 text"


def _snake(row: dict[str, Any]) -> dict[str, Any]:
    return {_CAMEL.sub("_", k).lower() if "." not in k else k: v for k, v in row.items()}


def _timestamp(value: Any) -> str:
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RowError(f"timestamp {text!r} is not ISO 8601 (e.g. 2026-11-03T14:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:
        raise RowError(f"timestamp {text!r} is outside years 1-9999 in UTC") from None
    return utc.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _quantity(value: Any) -> float:
    if isinstance(value, bool):  # JSON true is no quantity (float(True) would record 1)
        raise RowError(f"quantity {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(f"quantity {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise RowError(f"quantity {value!r} must be a finite number >= 0")
    return number


def _metadata(row: dict[str, Any]) -> dict[str, Any] | None:
    meta = row.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise RowError("metadata is not a JSON object") from None
    if meta is not None and not isinstance(meta, dict):
        raise RowError("metadata must be a JSON object")
    dotted = {k[len("metadata.") :]: v for k, v in row.items() if k.startswith("metadata.")}
    merged = {**(meta or {}), **dotted}
    return merged or None


def row_item(raw: dict[str, Any], seen: Counter[str]) -> dict[str, Any]:
    """The ingest item of one row, with its derived id; raises RowError naming the problem."""
    row = _snake(raw)
    customer = row.get("customer_id")
    external = row.get("external_customer_id")
    if bool(customer) == bool(external):
        raise RowError("give exactly one of customer_id and external_customer_id")
    meter = row.get("meter") or row.get("usage_type")
    if not meter or not isinstance(meter, str):
        raise RowError("meter is missing")
    if "quantity" not in row:
        raise RowError("quantity is missing")
    item: dict[str, Any] = {
        "type": "usage",
        "usageType": meter,
        "quantity": _quantity(row["quantity"]),
    }
    if customer:
        item["customerId"] = str(customer)
    else:
        item["externalCustomerId"] = str(external)
    if row.get("timestamp"):
        item["timestamp"] = _timestamp(row["timestamp"])
    for name, wire in (("units", "units"), ("description", "description")):
        if row.get(name):
            item[wire] = str(row[name])
    meta = _metadata(row)
    if meta:
        item["metadata"] = meta
    own = row.get("idempotency_key")
    if own:
        basis = f"key:{own}"
    else:
        # identical rows are distinct records: number them by order of appearance
        content = json.dumps(item, sort_keys=True, separators=(",", ":"))
        seen[content] += 1
        basis = f"row:{content}#{seen[content]}"
    item["id"] = "use_imp_" + hashlib.sha256(basis.encode()).hexdigest()[:40]
    return item


def _send(drip: Any, batch: list[tuple[int, dict[str, Any]]], tally: Tally) -> None:
    from .._endpoints import ingest

    body = json.dumps({"items": [item for _, item in batch]}, separators=(",", ":")).encode()
    result = drip._transport.send(ingest(body))
    statuses = result.statuses or ""
    tally.imported += statuses.count("c") + statuses.count("u")
    tally.duplicates += statuses.count("d")
    for rejected in result.results:
        line = batch[rejected.index][0]
        tally.rejected.append((line, f"{rejected.code}: {rejected.message}"))


def _import(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        total = sum(1 for _ in _rows(path))
    except UnicodeDecodeError:
        raise CommandError(f"{path}: {_not_utf8(path)}; save it as UTF-8") from None
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}") from None
    tally = Tally()
    seen: Counter[str] = Counter()
    batch: list[tuple[int, dict[str, Any]]] = []
    err = console(stderr=True)
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"))
    try:
        with client() as drip, Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task("import", total=total)
            for line, row in _rows(path):
                try:
                    if isinstance(row, RowError):
                        raise row
                    batch.append((line, row_item(row, seen)))
                except RowError as exc:
                    tally.rejected.append((line, str(exc)))
                    progress.advance(task)
                if len(batch) >= args.batch_size:
                    _send(drip, batch, tally)
                    progress.advance(task, len(batch))
                    batch = []
            if batch:
                _send(drip, batch, tally)
                progress.advance(task, len(batch))
    except KeyboardInterrupt:
        # Ctrl-C: say what is stored and that running it again is safe (was: silence)
        err.print(
            f"{path.name}: interrupted; {tally.imported} imported, {tally.duplicates} duplicate "
            "so far. Run the same command again to import the rest: rows already stored are "
            "answered as duplicates, never stored twice."
        )
        raise
    out = console()
    out.print(
        f"{path.name}: {tally.imported} imported, {tally.duplicates} duplicate "
        f"(already stored), {len(tally.rejected)} rejected"
    )
    for line, reason in sorted(tally.rejected)[:20]:
        out.print(f"  line {line}: {reason}")
    if len(tally.rejected) > 20:
        out.print(f"  ... and {len(tally.rejected) - 20} more")
    return 1 if tally.rejected else 0


def add(commands: Any) -> None:
    imp = commands.add_parser("import", help="backfill usage from a .csv or .jsonl file")
    imp.add_argument(
        "file", help="rows of customer_id|external_customer_id, meter, quantity, timestamp"
    )
    imp.add_argument("--batch-size", type=int, default=BATCH, help=f"rows per request ({BATCH})")
    imp.set_defaults(handler=_import)
