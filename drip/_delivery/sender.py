"""The sender thread: sends the worker's batches in order, one request in flight, and settles
each one: delivered, rejected item by item, refused, or left for the spool.

* Retries: the SDK's one retry policy (``drip._transport.retry_delay``: network errors,
  timeouts, 408, 425, 429, 5xx) resends the *same bytes* (same ids, so the server
  de-duplicates) with its backoff, honouring ``Retry-After``.
* Budget: ``max_retry_time`` seconds of failure in a row (an outage, not one batch). Within it,
  the outage is reported once (log + ``on_error``: at the first answer from a failing server,
  or when a retry after a network error fails too) and retries are logged at DEBUG only.
  Past it, without a spool, each batch gets one attempt and is then reported undelivered (the
  first one at once, the rest of the outage in one report with the total when it ends or at
  shutdown); with a spool nothing fails: the batch stays on disk and is retried (backoff capped
  at 8 s) until the server answers or the process ends, and a later process replays it.
* A refused key (401, 403): a verdict on the API key, not on the records (revoked, wrong or
  rotated). Reported once (``UNAUTHORIZED``: the status, where the records are, what to do).
  With a spool the batch stays on disk and is retried with a long backoff (doubling up to
  60 s), so a key fixed on the server is picked up; nothing is counted refused, and the spool
  files outlive the process (``drip spool replay`` sends them with a new key). Without a spool
  (or a batch the spool could not take) it is retried within the budget like an outage, then
  reported undelivered, naming the API key.
* Poison isolation: a batch the server refuses as a whole (400, 413, 422) is split in halves and
  each half sent again, down to the single record, which is then reported alone with the server's
  reason; every other record is delivered. Items the server rejects one by one (compact answer)
  are counted and reported alone.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, NamedTuple

from .._records import columns_count, item_is_columns, split_columns
from .._transport import backoff_delay, retry_delay
from ..errors import DripAPIError, DripDeliveryError, DripError, DripNetworkError
from ..models import IngestResult
from .spool import SpoolCorrupt
from .worker import Batch

if TYPE_CHECKING:
    from . import Delivery

__all__ = ["run_sender"]

logger = logging.getLogger("drip")

#: a whole batch refused with one of these may hold one bad record: split it to find it
SPLIT_STATUSES = frozenset({400, 413, 422})
#: the server refused the API key (unknown, revoked, rotated, not allowed), not the records
AUTH_STATUSES = frozenset({401, 403})
#: the longest wait between two tries of a refused key, with a spool
KEY_RETRY_CAP = 60.0


def run_sender(d: Delivery) -> None:
    """The sender thread's body: settle batches in order until the worker is done."""
    try:
        _run(d)
    finally:
        if d.stop.is_set():
            d.close_sender()


def _run(d: Delivery) -> None:
    while True:
        with d.cond:
            while not d.outbox:
                if d.worker_done:
                    return
                d.cond.wait(0.1)
            batch = d.outbox[0]
        try:
            left = bool(batch.count) and not _settle(d, batch)
        except Exception as exc:  # a bug must not end delivery, nor lose count
            logger.exception("drip: delivery sender error")
            d.counters.undelivered += batch.count
            d.reporter.failure("WORKER", batch.count, f"delivery sender error: {exc!r}")
            left = False
        if left:
            # the shutdown deadline passed: keep the rest where it is (on disk, or counted
            # undelivered by ``Delivery``) and release the flushes waiting for it
            d.release_markers()
            return
        with d.cond:
            d.outbox.popleft()
            d.queued -= batch.count
            d.cond.notify_all()
        if batch.marker is not None:
            batch.marker.set()


def _settle(d: Delivery, batch: Batch) -> bool:
    """Deliver one batch; False when it is left (shutdown deadline) for the spool or report."""
    body = batch.body
    file = batch.file
    spool = d.spool
    if body is None:
        assert file is not None and spool is not None
        try:
            body = spool.read(file.path)
        except (SpoolCorrupt, OSError) as exc:
            kept = spool.set_aside(file)
            d.counters.undelivered += batch.count
            d.reporter.failure("SPOOL_CORRUPT", batch.count, f"{exc} (kept as {kept})")
            batch.file = None
            return True
    sent = _deliver(
        d, body, batch.count, durable=file is not None, sizes=batch.sizes, counts=batch.counts
    )
    if not sent:
        return False
    if file is not None and spool is not None:
        spool.remove(file)
        batch.file = None
    return True


def _deliver(
    d: Delivery,
    body: bytes,
    count: int,
    *,
    durable: bool,
    sizes: list[int] | None = None,
    counts: dict[int, int] | None = None,
) -> bool:
    """POST ``body`` until it is answered or final; False when left at a shutdown deadline."""
    attempt = 0
    while True:
        if d.gave_up():
            return False
        try:
            d.in_request = True
            try:
                result = d.get_send()(body)
            finally:
                d.in_request = False
        except DripError as exc:
            delay = retry_delay(exc, attempt)
            if delay is None and _key_refused(exc):
                delay = backoff_delay(attempt, cap=KEY_RETRY_CAP if durable else 8.0)
            if delay is None:
                if (
                    count > 1
                    and isinstance(exc, DripAPIError)
                    and exc.status_code in SPLIT_STATUSES
                ):
                    return _split(d, body, sizes, counts, durable=durable)
                d.counters.refused += count
                d.reporter.failure("REFUSED", count, f"the server refused the batch: {exc}")
                return True
            if not _outage(d, exc, count, durable):
                return True  # past the budget without a spool: counted and reported
            d.counters.retries += 1
            attempt += 1
            logger.debug(
                "drip: ingest attempt %d failed (%s); retry in %.2f s", attempt, exc, delay
            )
            if durable and _key_refused(exc):
                if d.stop.wait(delay):  # a shutdown: the batch waits on disk for a later
                    return False  # process; no use trying the key again until then
                continue
            if not d.sleep(delay):
                return False
            continue
        except Exception as exc:  # a broken custom sender: do not loop on it
            d.counters.refused += count
            d.reporter.failure("REFUSED", count, f"the ingest sender failed: {exc!r}")
            return True
        _recovered(d)
        d.columns = bool(result.columns)
        d.packed = bool(result.packed)
        d.counters.batches += 1
        _account(d, result, count)
        return True


def _outage(d: Delivery, exc: DripError, count: int, durable: bool) -> bool:
    """Note a retryable failure; False when the batch is to be given up (budget, no spool)."""
    now = time.monotonic()
    d.failures += 1
    if d.down_since is None:
        d.down_since = now
    # a lone network error is often a stale keep-alive connection, retried at once: an outage
    # is reported (once) when a retry fails too, or when the server itself answered
    lone = d.failures == 1 and isinstance(exc, DripNetworkError)
    key = _key_refused(exc)
    if key:
        if not d.key_refused:
            d.key_refused = True
            _report_key(d, exc, durable)
        if durable:
            d.release_spooled()
    elif not (lone or d.outage_reported):
        d.outage_reported = True
        report = DripDeliveryError(
            f"delivery is failing ({exc}); retrying for up to {d.settings.max_retry_time:g} s"
            + (", then keeping records in the spool" if d.spool is not None else ""),
            code="RETRYING",
        )
        report.__cause__ = exc
        d.reporter.problem(report)
    if now - d.down_since < d.settings.max_retry_time or durable:
        return True
    d.counters.undelivered += count
    if d.outage_failed == 0:
        if d.spool is None:
            where = "there is no spool"
        elif d.spool_failed:
            where = "the spool could not be written"
        else:
            where = f"the spool is full (spool_max_bytes={d.settings.spool_max_bytes})"
        what = "refused the API key" if key else "failed"
        d.reporter.failure(
            "UNDELIVERED",
            count,
            f"the server {what} for longer than the retry budget "
            f"(max_retry_time={d.settings.max_retry_time:g} s) and {where}: {exc}",
        )
    d.outage_failed += count
    return False


def _key_refused(exc: DripError) -> bool:
    return isinstance(exc, DripAPIError) and exc.status_code in AUTH_STATUSES


def _report_key(d: Delivery, exc: DripError, durable: bool) -> None:
    """The one report of a refused key: what the server said, where the records are, and
    what to do about it."""
    spool = d.spool
    if durable and spool is not None:
        held = d.on_disk()
        why = (
            f"the server refused the API key ({exc}); nothing is lost: {held} records are kept "
            f"in the spool {spool.dir} and retried (at least once a minute), so a key fixed on "
            f"the server is picked up. If the key was rotated, send them with the new one once "
            f"this process has stopped: "
            f"drip spool replay {spool.dir} --api-key <new key>"
        )
    else:
        held = d.queued
        if spool is None:
            keep = "set spool_dir= to keep records on disk while a key is refused"
        elif d.spool_failed:
            keep = f"the spool {spool.dir} could not be written"
        else:
            keep = f"the spool {spool.dir} is full (spool_max_bytes={d.settings.spool_max_bytes})"
        why = (
            f"the server refused the API key ({exc}); retrying for up to "
            f"{d.settings.max_retry_time:g} s in case the key is fixed on the server, then "
            f"these records are lost: check DRIP_API_KEY / api_key= ({keep})"
        )
    report = DripDeliveryError(why, code="UNAUTHORIZED", count=held)
    report.__cause__ = exc
    d.reporter.problem(report, logging.ERROR)


def _recovered(d: Delivery) -> None:
    d.failures = 0
    d.outage_reported = False
    if d.key_refused:
        d.key_refused = False
        logger.warning("drip: the server accepts the API key again; delivery resumes")
    if d.down_since is None:
        return
    d.down_since = None
    report_outage(d)


def report_outage(d: Delivery) -> None:
    """The total given up during an outage beyond the first report (at its end or shutdown)."""
    later, d.outage_failed = d.outage_failed, 0
    if later:
        logger.error("drip: %d drip records in all were not delivered during the outage", later)


def _split(
    d: Delivery,
    body: bytes,
    sizes: list[int] | None,
    counts: dict[int, int] | None,
    *,
    durable: bool,
) -> bool:
    """Send the two halves of a refused batch, each on its own (down to single records; an
    ``events`` item alone is cut into two by its columns)."""
    split = halves(body, sizes, counts)
    if split is None:
        d.counters.refused += len(sizes or ()) or 1
        d.reporter.failure("REFUSED", len(sizes or ()) or 1, "a batch that cannot be split")
        return True
    parts, bad = split
    if bad:
        d.counters.refused += bad
        d.reporter.failure("REFUSED", bad, "the end of a spooled batch is not valid JSON")
    for part in parts:
        sent = _deliver(
            d, part.body, part.records, durable=durable, sizes=part.sizes, counts=part.counts
        )
        if not sent:
            return False
    return True


class Half(NamedTuple):
    """One half of a refused batch, ready to send on its own."""

    body: bytes
    #: the records it stands for
    records: int
    #: its items' lengths in bytes, and the records of those that stand for more than one
    sizes: list[int]
    counts: dict[int, int] | None


def halves(
    body: bytes, sizes: list[int] | None, counts: dict[int, int] | None
) -> tuple[list[Half], int] | None:
    """A refused batch cut in two (one ``events`` item alone: by its columns), and how many
    records at its end could not be read; None for a body that is not a batch. The sender and
    ``drip spool replay`` halve a refused batch this way down to the record it cannot take."""
    parts = items_of(body, sizes, counts)
    if parts is None:
        return None
    items, per_item, bad = parts
    if len(items) == 1:
        items = split_columns(items[0])
        per_item = [columns_count(item) for item in items]
    mid = len(items) // 2
    out = []
    for first, stop in ((0, mid), (mid, len(items))):
        half = items[first:stop]
        if half:
            many = {i: n for i, n in enumerate(per_item[first:stop]) if n != 1}
            joined = b'{"items":[' + b",".join(half) + b"]}"
            records = sum(per_item[first:stop])
            out.append(Half(joined, records, [len(i) for i in half], many or None))
    return out, bad


def items_of(
    body: bytes, sizes: list[int] | None, counts: dict[int, int] | None
) -> tuple[list[bytes], list[int], int] | None:
    """The items of a batch body as bytes, the records each stands for, and how many records
    at its end could not be read.

    With ``sizes`` (batches this process encoded) the body is cut, not parsed, so one item
    that is not JSON costs only itself. Without (a batch read back from the spool) items are
    decoded one after another up to the first that is not JSON; the rest count as unreadable.
    """
    head = b'{"items":['
    if not body.startswith(head):
        return None
    if sizes is not None:
        items, at = [], len(head)
        for n in sizes:
            items.append(body[at : at + n])
            at += n + 1
        get = (counts or {}).get
        return items, [get(i, 1) for i in range(len(items))], 0
    text = body.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    out: list[bytes] = []
    per_item: list[int] = []
    at = len(head)
    while at < len(text) and text[at] != "]":
        try:
            item, end = decoder.raw_decode(text, at)
        except ValueError:
            return out, per_item, max(1, text.count('"type"', at))
        out.append(text[at:end].encode())
        per_item.append(columns_count(out[-1]) if item_is_columns(item) else 1)
        at = end + 1 if end < len(text) and text[end] == "," else end
    return out, per_item, 0


def _account(d: Delivery, result: IngestResult, count: int) -> None:
    """Count a batch's answer: full (an entry per item) or compact (a letter per item)."""
    c = d.counters
    rejected: list[DripDeliveryError] = []
    for r in result.results:
        if r.status == "rejected":
            code = r.code or "REJECTED"
            rejected.append(
                DripDeliveryError(
                    f"the server rejected item {r.index} ({r.id}): {code}: {r.message or ''}",
                    code=code,
                    item_id=r.id,
                )
            )
    letters = result.statuses
    if letters is None:
        answered = len(result.results)
        duplicates = sum(r.status == "duplicate" for r in result.results)
        failed = len(rejected)
    else:
        answered = len(letters)
        duplicates = letters.count("d")
        failed = letters.count("r")
    c.duplicates += duplicates
    c.rejected += failed
    c.sent += answered - duplicates - failed
    if rejected:
        logger.error(
            "drip: the server rejected %d of %d records (first: %s)",
            len(rejected),
            count,
            rejected[0],
        )
        for exc in rejected:
            d.reporter.problem(exc, logging.DEBUG)
    missing = count - answered
    if missing > 0:  # should not happen; never count silently as sent
        c.refused += missing
        d.reporter.failure("REFUSED", missing, "the server's answer lacks their results")
