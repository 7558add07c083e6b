"""The worker thread: takes records out of the buffer, encodes them into batches, writes each
batch to the spool (when there is one), and hands the batches to the sender thread in order.

Encoding happens only here, once per record, into the JSON text of ``POST /v1/ingest`` (each
stretch of fast records as one ``events`` item once the server's answer said ``columns``); a batch
ends at ``max_batch_items`` records, ``max_batch_bytes`` bytes, or a flush marker. Without a
spool the worker stays at most two batches ahead of the sender, so memory is bounded by the
buffer plus two encoded batches, and a server that does not answer fills the buffer (the
caller then waits: back-pressure). With a spool it writes every batch to disk at once — within
one ``flush_interval`` of the record being made — and keeps only the next two bodies in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from itertools import compress, repeat
from operator import is_not
from typing import TYPE_CHECKING, Any

from .._records import (
    FAST,
    KINDS,
    WIDTH,
    Clock,
    check_fork,
    encode,
    encode_columns,
    encode_fast,
    encode_requests,
)  # fmt: skip
from ..errors import DripDeliveryError
from .buffer import Marker, flat
from .spool import SpoolFile

if TYPE_CHECKING:
    from . import Delivery

__all__ = ["Batch", "run_worker"]

logger = logging.getLogger("drip")

#: encoded batches kept in memory ahead of the one being sent
AHEAD = 2


class Batch:
    """One encoded batch (or only a flush marker, with ``count == 0``)."""

    __slots__ = ("body", "count", "counts", "file", "marker", "sizes")

    def __init__(
        self,
        body: bytes | None,
        count: int,
        marker: Marker | None,
        file: SpoolFile | None = None,
        sizes: list[int] | None = None,
        counts: dict[int, int] | None = None,
    ) -> None:
        self.body = body
        self.count = count
        self.marker = marker
        self.file = file
        #: each item's length in bytes, so a refused batch can be split without parsing it
        self.sizes = sizes
        #: records per item, for the ``events`` items (each holds many; any other item one)
        self.counts = counts


def run_worker(d: Delivery) -> None:
    """The worker thread's body."""
    d.buffer.exempt.add(threading.get_ident())
    clock = Clock()
    interval = max(0.01, d.settings.flush_interval)
    buf = d.buffer
    while True:
        buf.wake.wait(interval)
        buf.wake.clear()
        try:
            _pump(d, clock)
        except Exception as exc:  # a bug must not end delivery
            logger.exception("drip: delivery worker error")
            d.reporter.problem(DripDeliveryError(f"delivery worker error: {exc!r}", code="WORKER"))
        if d.stop.is_set() and (d.gave_up() or not (buf.q or d.carry)):
            break
    with d.cond:
        d.worker_done = True
        d.cond.notify_all()


def _room(d: Delivery) -> bool:
    """Wait until another batch may be encoded; False when a shutdown deadline passed."""
    while True:
        with d.cond:
            spool = d.spool
            if (
                spool is not None
                and not d.spool_failed
                and spool.has_room(d.settings.max_batch_bytes)
            ):
                return True  # the next batch goes to disk
            # no spool, or it is full: at most two batches in memory (a full spool used to
            # let them pile up without bound behind a batch retried for as long as the
            # server is down or refuses the key)
            # (a flush's marker alone holds no records, and may wait behind a stuck batch)
            if sum(b.file is None and b.body is not None for b in d.outbox) < AHEAD:
                return True
            if d.gave_up():
                return False
            lost = 0 if spool is None else _give_up_one(d)
            if not lost:
                d.cond.wait(0.05)
                continue
        if d.outage_failed == lost:  # the first of this outage (on_error: not under the lock)
            what = "refused the API key" if d.key_refused else "failed"
            d.reporter.failure(
                "UNDELIVERED",
                lost,
                f"the server {what} for longer than the retry budget "
                f"(max_retry_time={d.settings.max_retry_time:g} s) and the spool is full "
                f"(spool_max_bytes={d.settings.spool_max_bytes})",
            )


def _give_up_one(d: Delivery) -> int:
    """With the spool full behind a batch on disk that the sender keeps retrying (the server
    down, or refusing the key, past the retry budget): the oldest batch held in memory is
    counted undelivered, as it would be without a spool, so the caller is not held for as
    long as that lasts. Called under ``d.cond``; its records (0: nothing to give up)."""
    since = d.down_since
    if since is None or time.monotonic() - since < d.settings.max_retry_time:
        return 0
    if not d.outbox or d.outbox[0].file is None:
        return 0  # the sender gives up in-memory batches itself past the budget
    for n, batch in enumerate(d.outbox):
        if n and batch.file is None and batch.count:
            break
    else:
        return 0
    del d.outbox[n]
    d.queued -= batch.count
    d.counters.undelivered += batch.count
    d.outage_failed += batch.count
    if batch.marker is not None:
        batch.marker.set()
    d.cond.notify_all()
    return batch.count


def _pump(d: Delivery, clock: Clock) -> None:
    """Encode everything buffered, batch by batch, and hand it over."""
    buf = d.buffer
    buf.busy(True)
    try:
        _drain(d, clock)
    finally:
        buf.busy(False)


def _drain(d: Delivery, clock: Clock) -> None:
    buf = d.buffer
    while (buf.q or d.carry) and not (d.gave_up() and d.spool is None):
        if not _room(d):
            return
        batch = _encode(d, clock)
        buf.made_room()
        spool = d.spool
        body = batch.body
        if (
            body is not None
            and spool is not None
            and not d.spool_failed
            and spool.has_room(len(body))
        ):
            d.spool_batch(batch)
        with d.cond:
            if batch.file is not None and len(d.outbox) >= AHEAD:
                batch.body = None  # on disk: read back when its turn comes
            d.outbox.append(batch)
            d.queued += batch.count
            d.encoding = []
            d.cond.notify_all()
        if d.key_refused and batch.marker is not None:
            d.release_spooled()


def _all_fast(chunk: list[Any], clock: Clock) -> list[str] | None:
    """The JSON items of a slice that holds only fast records (the usual one), encoded in one
    comprehension; None for any other slice (it takes the record by record loop)."""
    kinds = chunk[::WIDTH]
    if kinds.count(FAST) != len(kinds):
        return None
    it = iter(chunk)
    try:
        return [encode_fast(r, clock) for r in zip(*[it] * WIDTH, strict=True)]
    except Exception:  # the loop finds the record, and refuses it alone
        return None


def _all_requests(chunk: list[Any], clock: Clock) -> list[str] | None:
    """The JSON items of a slice of web request records only (``encode_requests``); None for
    any other slice, or when encoding fails (the record by record loop finds the record)."""
    try:
        return encode_requests(chunk, clock)
    except Exception:
        return None


#: fewer fast records in a row than this go as ``event`` items, not as an ``events`` item
MIN_STRETCH = 4

#: one thing to encode: elements ``[start, stop)`` of a slice, and its record (None: the fast
#: records there, as one ``events`` item)
Unit = tuple[int, int, Any]


def _records(chunk: list[Any], first: int, stop: int) -> list[Unit]:
    """The records of ``chunk[first:stop]`` one by one (a fast one flat, any other padded)."""
    it = iter(chunk[first:stop])
    # flat: an int kind (fast, request; see drip._records); padded: any other record
    records = [r if r[0].__class__ is int else r[0] for r in zip(*[it] * WIDTH, strict=True)]
    starts = range(first, stop, WIDTH)
    return list(zip(starts, range(first + WIDTH, stop + WIDTH, WIDTH), records, strict=True))


def _units(chunk: list[Any]) -> list[Unit]:
    """A slice as ``events`` items for its stretches of fast records and single records
    between them (run starts and ends, other events, a flush marker), in order."""
    kinds = chunk[::WIDTH]
    fast = kinds.count(FAST)
    if fast == len(kinds) >= MIN_STRETCH:  # the usual slice: fast records only
        return [(0, len(chunk), None)]
    if fast < MIN_STRETCH:  # no stretch to find (a web app's request runs): one pass
        return _records(chunk, 0, len(chunk))
    others = list(compress(range(len(kinds)), map(is_not, kinds, repeat(FAST))))
    units: list[Unit] = []
    first = 0  # the first record not in a unit yet
    k = 0
    while k < len(others):
        at = end = others[k]
        while k < len(others) and others[k] == end:  # a row of other records: one pass
            k += 1
            end += 1
        if at - first >= MIN_STRETCH:
            units.append((first * WIDTH, at * WIDTH, None))
        elif at > first:
            units += _records(chunk, first * WIDTH, at * WIDTH)
        units += _records(chunk, at * WIDTH, end * WIDTH)
        first = end
    if len(kinds) - first >= MIN_STRETCH:
        units.append((first * WIDTH, len(chunk), None))
    elif len(kinds) > first:
        units += _records(chunk, first * WIDTH, len(chunk))
    return units


def _encode(d: Delivery, clock: Clock) -> Batch:
    """Encode one batch (by count and bytes), up to a flush marker."""
    check_fork()  # the ids' prefix is this process's (a fork no at-fork hook saw)
    settings = d.settings
    limit_items, limit_bytes = settings.max_batch_items, settings.max_batch_bytes
    packed = d.packed
    if packed:  # up to 20,000 records when they wait (``Settings.packed_batch_items``): a
        # request costs its sender about 2 ms of CPU in httpx on a slow host whatever its size,
        # which 5,000 packed records (160 KB) do not outweigh; ``max_batch_bytes`` still holds
        limit_items = settings.packed_batch_items
    parts: list[str] = []
    size = 12  # {"items":[]}
    marker: Marker | None = None
    clock.sync()
    # the elements of the records taken out and not handed over yet (WIDTH each), kept on ``d``:
    # counted as pending, and a fork() child finds the run starts among them
    taken: list[Any] = []
    sizes: list[int] = []
    #: records per item, where an ``events`` item holds more than one
    counts: dict[int, int] = {}
    if d.carry is not None:
        text, rec = d.carry
        parts.append(text)
        taken.extend(flat(rec))
        size += len(text) + 1
        sizes.append(len(text))
        d.carry = None
    # Take the next records in one slice: the caller's thread only ever appends whole records
    # (one ``extend`` each) and this thread is the only one that removes any, so the first
    # ``end`` elements are whole records and stay where they are until deleted here.
    q = d.buffer.q
    end = min(len(q), (limit_items - len(parts)) * WIDTH)
    chunk = q[:end]
    d.encoding = taken + chunk if taken else chunk  # never changed in place: no copy
    del q[:end]
    add_part, add_size = parts.append, sizes.append
    used = 0  # elements of ``chunk`` settled: encoded, refused, or the marker / carry
    refused: list[tuple[int, int]] = []
    units: list[Unit] | None = None
    texts = None
    if d.columns:  # the server takes ``events`` items
        texts = _all_requests(chunk, clock)  # a web app's slice: one compiled pass
        if texts is None:
            units = _units(chunk)
    else:
        texts = _all_fast(chunk, clock)
    if units is None:  # ``texts``: every record's item, or None
        if texts is not None:
            lengths = list(map(len, texts))
            if size + sum(lengths) + len(lengths) <= limit_bytes:  # the whole slice fits
                parts += texts
                sizes += lengths
                used = len(chunk)
        if used == 0:
            units = _records(chunk, 0, len(chunk))
    k = 0
    while units is not None and k < len(units):  # per record, or per stretch of fast records
        start, stop, rec = units[k]
        k += 1
        if rec is None:
            try:
                stretch = chunk if stop - start == len(chunk) else chunk[start:stop]
                text = encode_columns(stretch, clock, packed)
            except Exception:  # record by record, to find the one that fails and refuse it
                units[k:k] = _records(chunk, start, stop)
                continue
            n = len(text)
            if size + n + 1 > limit_bytes:
                if parts:
                    break  # the rest goes back in front
                half = start + (stop - start) // WIDTH // 2 * WIDTH  # too big alone: halves
                units[k:k] = [(start, half, None), (half, stop, None)]
                if half - start < MIN_STRETCH * WIDTH:
                    units[k : k + 2] = _records(chunk, start, stop)
                continue
            size += n + 1
            counts[len(parts)] = (stop - start) // WIDTH
            add_part(text)
            add_size(n)
            used = stop
            continue
        if rec.__class__ is Marker:
            marker = rec
            with d.buffer.lock:
                d.buffer.markers -= 1
            used = start + WIDTH
            break
        try:
            if texts is not None:
                text = texts[start // WIDTH]
            else:
                text = encode_fast(rec, clock) if rec[0] is FAST else encode(rec, clock)
        except Exception as exc:
            d.counters.refused += 1
            d.reporter.problem(
                DripDeliveryError(
                    f"a drip {KINDS.get(rec[0], 'record')} could not be encoded: {exc!r}",
                    code="ENCODE",
                )
            )
            refused.append((start, stop))
            used = stop
            continue
        n = len(text)
        size += n + 1
        if size > limit_bytes and parts:
            d.carry = (text, rec)
            used = stop
            break
        add_part(text)
        add_size(n)
        used = stop
    if used < len(chunk):  # back in front, in order: a marker or the byte limit came first
        q[0:0] = chunk[used:]
    if taken or used < len(chunk) or refused or marker is not None or d.carry is not None:
        kept = chunk[:used]
        if marker is not None or d.carry is not None:  # not records to hand over (yet)
            del kept[-WIDTH:]
        for at, stop in reversed(refused):
            del kept[at:stop]
        taken.extend(kept)
        d.encoding = taken
    # else: the whole slice is handed over, and ``d.encoding`` is it already
    if not parts:
        return Batch(None, 0, marker)
    text = ",".join(parts)
    body = f'{{"items":[{text}]}}'.encode()
    count = len(parts) + sum(counts.values()) - len(counts)
    # item sizes in characters are sizes in bytes only for ASCII (what the encoders write)
    ascii_only = len(body) == len(text) + 12
    return Batch(body, count, marker, sizes=sizes if ascii_only else None, counts=counts or None)
