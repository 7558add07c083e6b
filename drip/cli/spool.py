"""``drip spool list`` and ``drip spool replay``: what the disk spool holds, and sending it with
a key named on purpose (after a key was rotated or revoked; see ``drip._delivery.replay``).

The spool's root is ``--spool-dir`` or ``DRIP_SPOOL_DIR``; each directory under it belongs to
one base URL and one key. Keys are never printed: a directory shows its key's first 12
characters (the hint the server shows too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ..errors import DripError
from ._common import CommandError, console

__all__ = ["add"]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text!r}")
    return value


def _root(args: argparse.Namespace) -> str:
    root = args.spool_dir or os.environ.get("DRIP_SPOOL_DIR")
    if not root:
        raise CommandError("which spool? Pass --spool-dir DIR or set DRIP_SPOOL_DIR")
    if not os.path.isdir(root):
        raise CommandError(f"{os.path.abspath(root)} is not a directory")
    return str(root)


def _is_spool(path: str) -> bool:
    from .._delivery.spool import META

    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(n == META or n.endswith((".batch", ".lock", ".corrupt")) for n in names)


def _spools(root: str) -> list[str]:
    """The spool directories under ``root`` (or ``root`` itself when it is one)."""
    if _is_spool(root) and not any(os.path.isdir(os.path.join(root, n)) for n in os.listdir(root)):
        return [os.path.abspath(root)]
    found = [os.path.join(root, n) for n in sorted(os.listdir(root))]
    return [os.path.abspath(p) for p in found if os.path.isdir(p) and _is_spool(p)]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .._delivery.spool import survey

    root = _root(args)
    summaries = [survey(p) for p in _spools(root)]
    out = console()
    if not summaries:
        out.print(f"no spool directories in {os.path.abspath(root)}")
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("SPOOL", "BASE URL", "KEY", "BATCHES", "RECORDS", "SIZE", "OLDEST", "IN USE"):
        right = name in ("BATCHES", "RECORDS", "SIZE", "IN USE")
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for s in summaries:
        oldest = (
            "-"
            if s.oldest is None
            else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.oldest))
        )
        table.add_row(
            os.path.basename(s.dir),
            s.base_url or "?",
            s.key or "?",
            str(s.batches),
            f"{s.records:,}",
            _size(s.bytes),
            oldest,
            str(s.live),
        )
    out.print(table)
    out.print(f"in {os.path.abspath(root)}", style="dim")
    corrupt = sum(s.corrupt for s in summaries)
    if corrupt:
        out.print(f"{corrupt} damaged batch files (.corrupt) are kept aside, not replayed")
    if any(s.records for s in summaries):
        out.print(
            "send one with a key of its account: drip spool replay SPOOL --api-key KEY", style="dim"
        )
    return 0


def _target(args: argparse.Namespace) -> str:
    """The spool directory named by a path, or by its name (or a prefix of it) in the root."""
    given = str(args.spool)
    if os.path.isdir(given) and _is_spool(given):
        return os.path.abspath(given)
    if os.sep in given or not (args.spool_dir or os.environ.get("DRIP_SPOOL_DIR")):
        raise CommandError(
            f"{given!r} is not a spool directory (pass its path, or its name with --spool-dir)"
        )
    matches = [p for p in _spools(_root(args)) if os.path.basename(p).startswith(given)]
    if len(matches) != 1:
        names = ", ".join(os.path.basename(p) for p in matches)
        raise CommandError(
            f"{given!r} names {'no' if not matches else f'{len(matches)} ({names})'} spool "
            "directories: see drip spool list"
        )
    return matches[0]


def _replay(args: argparse.Namespace) -> int:
    from .._config import resolve_settings
    from .._delivery.replay import replay_spool
    from .._delivery.spool import survey

    path = _target(args)
    found = survey(path)
    base_url = args.base_url or found.base_url
    if not base_url or base_url.startswith("local:"):
        raise CommandError(
            f"the spool {path} does not say which server it is for: pass --base-url URL"
        )
    api_key = args.api_key
    if api_key == "-":  # from stdin: a key on the command line is seen by anyone running ps
        api_key = sys.stdin.readline().strip()
    if not api_key:
        raise CommandError("pass the key to send them with: --api-key KEY (or - to read stdin)")
    settings = resolve_settings(
        api_key=api_key, base_url=base_url, max_retry_time=args.max_retry_time, env={}
    )
    out = console()
    console(stderr=True).print(
        f"sending {path} to {base_url} (a server that does not answer is retried for up to "
        f"{settings.max_retry_time:g} s: --max-retry-time)"
    )
    outcome = replay_spool(path, settings)
    out.print(
        f"replayed {outcome.sent + outcome.duplicates + outcome.rejected + outcome.refused:,} records "
        f"({_n(outcome.batches, 'batch')}) from {path} to {outcome.base_url}: {outcome.sent:,} "
        f"stored, {outcome.duplicates:,} already there, "
        f"{outcome.rejected + outcome.refused:,} rejected"
        + (f" ({_reasons(outcome.reasons)})" if outcome.rejected else "")
    )
    for problem in outcome.problems:
        out.print(f"  {problem}")
    if outcome.live:
        out.print(
            f"{_n(outcome.live, 'batch')} of a process that is still running left alone: "
            "stop it (or let it finish), then replay again"
        )
    if outcome.stopped:
        kept = _n(outcome.left, "batch")
        raise DripError(f"stopped, {kept} kept in {path}: {outcome.stopped}")
    return 1 if outcome.problems or outcome.live else 0


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "es" if noun.endswith("ch") else "s")


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(reasons.items()))


def add(commands: Any) -> None:
    spool = commands.add_parser(
        "spool", help="list the disk spool, or send what it holds with a new key"
    )
    actions = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each spool directory: server, key hint, records")
    listing.add_argument("--spool-dir", metavar="DIR", help="the spool (default: DRIP_SPOOL_DIR)")
    listing.set_defaults(handler=_list)
    replay = actions.add_parser(
        "replay",
        help="send a spool directory's records with the key given (same ids: sent once)",
    )
    replay.add_argument("spool", metavar="SPOOL", help="its path, or its name in drip spool list")
    replay.add_argument(
        "--api-key",
        required=True,
        metavar="KEY",
        help="the key to send them with (of the same account); - reads it from stdin, out of ps",
    )
    replay.add_argument(
        "--base-url", metavar="URL", help="the server (default: the one the spool was for)"
    )
    replay.add_argument("--spool-dir", metavar="DIR", help="the spool (default: DRIP_SPOOL_DIR)")
    replay.add_argument(
        "--max-retry-time",
        type=_seconds,
        metavar="SECONDS",
        help="how long a server that does not answer is retried before stopping (default 60)",
    )
    replay.set_defaults(handler=_replay)
