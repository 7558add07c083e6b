"""``drip spool replay``: send the batches of one spool directory with a key given on purpose.

A spool directory belongs to one base URL and one API key (``spool``), so a process started
with a new key (the old one rotated or revoked) never replays what the old one left. Replaying
with another key must be asked for, never implicit: records of one account sent with another
account's key would bill the wrong account. So this runs only from the command line, with the
key named there, and:

* claims only the batches of processes that are gone (as a starting process does), so a live
  process keeps its own;
* sends each batch as it was written (same ids: what the server already has is answered
  ``duplicate``), oldest first, one at a time, retrying outages with the SDK's policy within
  ``max_retry_time``;
* removes a batch file only once the server has answered it;
* splits a batch the server refuses whole (400, 413, 422) down to the record it cannot take,
  which is counted refused (as the sender does);
* stops, keeping the files, when the server refuses the key (401, 403), stays unreachable, or rejects every record of the first batch (the key is most likely of
  another account: nothing was stored, and nothing is removed).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .._config import Settings
from .._transport import IngestSender, retry_delay
from ..errors import DripAPIError, DripError
from ..models import IngestResult
from .sender import AUTH_STATUSES, SPLIT_STATUSES, halves
from .spool import Spool, SpoolCorrupt, key_hint

__all__ = ["ReplayOutcome", "replay_spool"]


@dataclass
class ReplayOutcome:
    """What a replay did (counts of records, except where it says batches)."""

    dir: str
    base_url: str
    batches: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: records the server refused alone (after splitting a batch it refused whole)
    refused: int = 0
    #: why the replay stopped early (the batches not sent stay on disk), or None
    stopped: str | None = None
    #: batches still on disk: not sent (``stopped``) or held by a live process
    left: int = 0
    #: of ``left``: batches of processes still running, left alone
    live: int = 0
    #: the server's reasons for rejected records, with their count
    reasons: dict[str, int] = field(default_factory=dict)
    #: damaged files set aside (``.corrupt``) and problems found when claiming
    problems: list[str] = field(default_factory=list)


def replay_spool(path: str, settings: Settings) -> ReplayOutcome:
    """Send the batches left in the spool directory ``path`` with ``settings``' key and URL."""
    spool = Spool.existing(path)
    outcome = ReplayOutcome(spool.dir, settings.base_url)
    files, problems = spool.claim_orphans()
    outcome.problems += problems
    outcome.live = sum(
        n.endswith(".batch") and not n.startswith(spool.owner + "-") for n in os.listdir(spool.dir)
    )
    send = IngestSender(settings)
    try:
        for n, file in enumerate(files):
            try:
                body = spool.read(file.path)
            except (SpoolCorrupt, OSError) as exc:
                outcome.problems.append(f"{exc} (kept as {spool.set_aside(file)})")
                continue
            results: list[IngestResult] = []
            why = _send_split(send, body, settings, results, outcome)
            if why:
                outcome.stopped = why
                outcome.left = len(files) - n
                break
            if not _count(outcome, results, first=outcome.batches == 0):
                outcome.stopped = (
                    f"the server rejected every record of the first batch "
                    f"({', '.join(sorted(outcome.reasons))}): is the key "
                    f"{key_hint(settings.api_key)} of the account these records belong to? "
                    f"Nothing was stored and nothing was removed"
                )
                outcome.left = len(files) - n
                break
            spool.remove(file)
    finally:
        send.close()
        spool.close()
        spool.release()
    outcome.left += outcome.live
    return outcome


def _send_split(
    send: IngestSender,
    body: bytes,
    settings: Settings,
    results: list[IngestResult],
    outcome: ReplayOutcome,
) -> str:
    """Send ``body``, appending the answers to ``results``; a batch the server refuses whole
    (400, 413, 422) is split in halves down to the record, which is then counted ``refused``
    alone (as the sender does). The reason to stop, or ``""``."""
    result, why, status = _send(send, body, settings)
    if result is not None:
        results.append(result)
        return ""
    if status not in SPLIT_STATUSES:
        return why
    split = halves(body, None, None)
    if split is None:
        return why
    parts, bad = split
    outcome.refused += bad
    if len(parts) == 1 and parts[0].records == 1:  # the record the server cannot take
        outcome.refused += 1
        outcome.problems.append(f"a record the server refused: {why}")
        return ""
    for part in parts:
        why = _send_split(send, part.body, settings, results, outcome)
        if why:
            return why
    return ""


def _send(
    send: IngestSender, body: bytes, settings: Settings
) -> tuple[IngestResult | None, str, int]:
    """One batch until the server answers it; (None, why) when it will not."""
    attempt = 0
    start = time.monotonic()
    while True:
        try:
            return send(body), "", 0
        except DripError as exc:
            status = exc.status_code if isinstance(exc, DripAPIError) else 0
            if status in AUTH_STATUSES:
                hint = key_hint(settings.api_key)
                return None, f"the server refused the API key {hint}: {exc}", status
            delay = retry_delay(exc, attempt)
            if delay is None:
                return None, f"the server refused a batch whole: {exc}", status
            if time.monotonic() + delay - start > settings.max_retry_time:
                why = "the server failed for longer than max_retry_time "
                return None, f"{why}({settings.max_retry_time:g} s): {exc}", status
            time.sleep(delay)
            attempt += 1


def _count(outcome: ReplayOutcome, results: list[IngestResult], *, first: bool) -> bool:
    """Add a batch's answers; False when they rejected every record of the first batch."""
    statuses: list[str] = []
    codes: list[str] = []
    for result in results:
        letters = result.statuses
        if letters is None:
            statuses += [r.status for r in result.results]
            codes += [r.code or "REJECTED" for r in result.results if r.status == "rejected"]
        else:
            statuses += ["created" if c == "c" else "duplicate" if c == "d" else "rejected"
                         for c in letters]  # fmt: skip
            codes += ["REJECTED"] * letters.count("r")
    for code in codes:
        outcome.reasons[code] = outcome.reasons.get(code, 0) + 1
    if first and statuses and len(codes) == len(statuses):
        return False
    outcome.batches += 1
    outcome.duplicates += statuses.count("duplicate")
    outcome.rejected += len(codes)
    outcome.sent += len(statuses) - statuses.count("duplicate") - len(codes)
    return True
