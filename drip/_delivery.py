"""Delivery: the bounded in-process buffer and the background worker that ships it.

The caller's thread only ever does ``Delivery.append(record)``: a length check and a
``deque.append`` (no lock, no I/O). One daemon worker thread per client, started on the first
record, wakes when ``max_batch_items`` records are waiting or every ``flush_interval`` seconds,
encodes records to JSON (only here) and sends them in ONE ``POST /v1/ingest`` per batch: run
starts, events, usage records and run ends of many runs, in the order they were recorded.
When more than a batch is waiting, a second daemon thread (``drip-delivery-sender``, see
``drip._pipeline``) sends each batch while the worker encodes the next one; still one request
at a time, so batches reach the server in recording order. The server answers in compact form
(a status letter per item; details only for rejected items).

Guarantees and policies (each one is counted in ``stats()``, logged on the ``drip`` logger and
passed to ``on_error`` as a ``DripDeliveryError`` with a ``code``):

* Retries: network errors, timeouts, 408, 429 and 5xx retry the *same bytes* (same ids, so the
  server de-duplicates) with backoff and jitter, honouring ``Retry-After``, for as long as the
  process runs or until a ``shutdown`` deadline. A ``duplicate`` result counts as delivered.
* ``REJECTED``: an item the server refused (its reason is in the error); never retried.
* ``REFUSED``: the whole batch was refused with a non-retryable status (401, 403, 400, ...).
* ``BUFFER_FULL``: when ``max_buffer`` records are waiting, a new record is dropped (the newest
  one: what is already buffered keeps its order). The caller's thread only counts; the worker
  logs and reports the drops, at most once per wake-up, with the number dropped.
* ``CLOSED``: a record arriving after ``shutdown`` is dropped, counted and reported.
* ``UNDELIVERED``: records still pending when ``shutdown``'s timeout expires.

``flush(timeout)`` and ``shutdown(timeout)`` are bounded (default ``shutdown_timeout``) and
return a ``FlushReport``. An ``atexit`` hook shuts every live delivery down with its
``shutdown_timeout`` (in ``multiprocessing`` children too, which skip atexit). After ``fork()``
the child drops the inherited buffer (the parent sends it), and starts its own worker and HTTP
client on its first record.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ._config import Settings
from ._pipeline import Call, Sender, SenderThread
from ._records import KINDS, Clock, Record
from ._reports import DeliveryStats, FlushReport
from .errors import DripDeliveryError, DripError
from .models import IngestResult

__all__ = ["Delivery", "DeliveryStats", "FlushReport", "Sender"]

logger = logging.getLogger("drip")


class _Marker:
    """Put in the buffer by ``flush``; set by the worker once everything before it is done."""

    __slots__ = ("done", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        self.done.set()
        for loop, fut in self.waiters:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Job:
    """An encoded batch: its body (None when every record failed to encode), its records, the
    flush marker that ended it, and its attempt on the sender thread (None: the worker sends
    it when it settles the batch)."""

    __slots__ = ("batch", "body", "call", "marker")

    def __init__(self, body: bytes | None, batch: list[Record], marker: _Marker | None) -> None:
        self.body = body
        self.batch = batch
        self.marker = marker
        self.call: Call | None = None

    def flowing(self) -> bool:
        """A batch after this one may go to the sender thread: this one is there, and has not
        failed."""
        return self.call is not None and not self.call.failed()


_live: weakref.WeakSet[Delivery] = weakref.WeakSet()


class Delivery:
    """One client's buffer and worker. ``append`` is the only method on the hot path."""

    def __init__(
        self,
        settings: Settings,
        *,
        sender: Sender | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings = settings
        self._given_sender = sender
        self._on_error = on_error
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a fork() child (the parent's records stay)."""
        self._pid = os.getpid()
        self._buf: deque[Any] = deque()
        #: below this many buffered records ``append`` takes the fast path; 0 until the
        #: worker runs, so the first record (and every one after a fork) starts it.
        self._soft = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._sender: Sender | None = self._given_sender
        #: the sender thread, once a batch was sent while the next one was encoded
        self._jobs: SenderThread | None = None
        self._closed = False
        self._deadline = float("inf")
        #: records of the batches encoded and not yet answered, and the encoded item that did not
        #: fit into the last batch
        self._inflight = 0
        self._markers = 0
        self._carry: tuple[str, Record] | None = None
        self._sent = self._duplicates = self._rejected = self._refused = 0
        self._dropped = self._undelivered = self._batches = self._retries = 0
        self._unreported_drops: dict[str, int] = {}
        self._last_drop_report = 0.0

    # -- the caller's side --------------------------------------------------------------------

    def append(self, rec: Record) -> None:
        """Buffer one record; never blocks, never raises."""
        buf = self._buf
        if len(buf) < self._soft:
            buf.append(rec)
        else:
            self._append_slow(rec)

    def _append_slow(self, rec: Record) -> None:
        buf = self._buf
        if self._soft and len(buf) < self.settings.max_buffer:
            buf.append(rec)  # the worker runs and is behind: make sure it is awake
            if not self._wake.is_set():
                self._wake.set()
            return
        with self._lock:
            if self._pid != os.getpid():  # a fork() the at-fork hook did not see
                self._reset()
            if self._closed:
                self._drop("CLOSED")
            elif len(self._buf) >= self.settings.max_buffer:
                self._drop("BUFFER_FULL")
            else:
                self._buf.append(rec)
                self._ensure_worker()
        if self._closed and time.monotonic() - self._last_drop_report >= 1.0:
            self._report_drops()  # no worker any more: report from here, at most once a second

    def _drop(self, code: str) -> None:
        self._dropped += 1
        self._unreported_drops[code] = self._unreported_drops.get(code, 0) + 1
        if not self._wake.is_set():
            self._wake.set()

    def _ensure_worker(self) -> None:
        if self._worker is None and not self._closed:
            self._worker = threading.Thread(target=self._work, name="drip-delivery", daemon=True)
            self._worker.start()
            self._soft = min(self.settings.max_batch_items, self.settings.max_buffer)
            _hook_multiprocessing_exit()

    # -- flush / shutdown ---------------------------------------------------------------------

    def _pending(self) -> int:
        return len(self._buf) - self._markers + self._inflight + (self._carry is not None)

    def _counts(self) -> tuple[int, int]:
        failed = self._rejected + self._refused + self._dropped + self._undelivered
        return self._sent + self._duplicates, failed

    def _push_marker(self) -> _Marker | None:
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            if not self._pending():
                return None
            marker = _Marker()
            self._markers += 1
            self._buf.append(marker)
            self._ensure_worker()
        self._wake.set()
        return marker

    def _report_since(self, before: tuple[int, int]) -> FlushReport:
        self._report_drops()
        sent, failed = self._counts()
        return FlushReport(sent - before[0], failed - before[1], self._pending())

    def _timeout(self, timeout: float | None) -> float:
        return self.settings.shutdown_timeout if timeout is None else max(0.0, timeout)

    def flush(self, timeout: float | None = None) -> FlushReport:
        """Wait until every record buffered before this call is sent (or ``timeout``)."""
        before = self._counts()
        marker = self._push_marker()
        if marker is not None:
            marker.done.wait(self._timeout(timeout))
        return self._report_since(before)

    async def aflush(self, timeout: float | None = None) -> FlushReport:
        """``flush`` for asyncio code: waits without blocking the event loop."""
        before = self._counts()
        marker = self._push_marker()
        if marker is not None:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            marker.waiters.append((loop, fut))
            if marker.done.is_set():
                _resolve(fut)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(fut, self._timeout(timeout))
        return self._report_since(before)

    def shutdown(self, timeout: float | None = None) -> FlushReport:
        """Flush, stop the worker, close the sender; later records are dropped (``CLOSED``)."""
        timeout = self._timeout(timeout)
        deadline = time.monotonic() + timeout
        before = self._counts()
        marker = self._push_marker()
        with self._lock:
            self._closed = True
            self._soft = 0
        if marker is not None:
            marker.done.wait(timeout)
        self._deadline = deadline
        self._stop.set()
        self._wake.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - time.monotonic()))
        report = self._report_since(before)
        if report.pending:
            self._problem(
                DripDeliveryError(
                    f"{report.pending} drip records were not delivered before the shutdown "
                    f"timeout ({timeout:g} s)",
                    code="UNDELIVERED",
                    count=report.pending,
                ),
                logging.ERROR,
            )
        return report

    def stats(self, errors: int = 0, last_error: str | None = None) -> DeliveryStats:
        sent, failed = self._counts()
        pending = self._pending()
        return DeliveryStats(
            recorded=sent + failed - self._dropped + pending,
            sent=self._sent,
            duplicates=self._duplicates,
            rejected=self._rejected,
            refused=self._refused,
            dropped=self._dropped,
            undelivered=self._undelivered,
            pending=pending,
            batches=self._batches,
            retries=self._retries,
            errors=errors,
            last_error=last_error,
        )

    # -- problems -----------------------------------------------------------------------------

    def _problem(self, exc: BaseException, level: int = logging.WARNING) -> None:
        """Log a delivery problem and hand it to ``on_error``; never raises."""
        logger.log(level, "drip: %s", exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                logger.exception("drip: the on_error callback raised")

    def _report_drops(self) -> None:
        with self._lock:
            drops, self._unreported_drops = self._unreported_drops, {}
            if drops:
                self._last_drop_report = time.monotonic()
        for code, count in drops.items():
            reason = (
                f"the buffer held max_buffer={self.settings.max_buffer} records"
                if code == "BUFFER_FULL"
                else "the client was shut down"
            )
            self._problem(
                DripDeliveryError(
                    f"{count} drip records were dropped: {reason}", code=code, count=count
                ),
                logging.ERROR,
            )

    # -- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        clock = Clock()
        interval = max(0.01, self.settings.flush_interval)
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._report_drops()
                self._pump(clock)
            except Exception as exc:  # a bug must not end delivery
                logger.exception("drip: delivery worker error")
                self._problem(DripDeliveryError(f"delivery worker error: {exc!r}", code="WORKER"))
            if self._stop.is_set() and (self._gave_up() or not (self._buf or self._carry)):
                break
        self._undelivered += self._pending()
        while self._buf:
            rec = self._buf.popleft()
            if rec.__class__ is _Marker:
                rec.set()  # nobody should wait for what will not come
        self._markers = 0
        self._carry = None
        if self._jobs is not None:
            self._jobs.stop()
            self._jobs = None
        if self._given_sender is None and self._sender is not None:
            with contextlib.suppress(Exception):
                self._sender.close()  # type: ignore[attr-defined]

    def _gave_up(self) -> bool:
        return self._stop.is_set() and time.monotonic() >= self._deadline

    def _pump(self, clock: Clock) -> None:
        """Send everything buffered, in order, one request in flight at a time.

        When there is more to send than one batch, batches go through the sender thread: the
        worker encodes and hands over the next batch while the one before it is in flight, and
        the sender thread sends it the moment that one is answered. After a failed attempt the
        worker takes over again and settles every batch handed over, in order (``_pipeline``).
        """
        pending: deque[_Job] = deque()
        try:
            while (self._buf or self._carry) and not self._gave_up():
                job = self._encode(clock)
                if pending and not pending[-1].flowing():
                    while pending:  # a failure (or a batch kept back): settle in order first
                        self._finish(pending.popleft())
                if job.body is not None and (pending or self._buf or self._carry):
                    after = pending[-1].call if pending else None
                    job.call = self._sending().submit(self._get_sender(), job.body, after)
                if pending or job.call is not None:
                    pending.append(job)
                    while len(pending) > 1:
                        self._finish(pending.popleft())
                else:
                    self._finish(job)
        finally:
            while pending:
                self._finish(pending.popleft())
            self._inflight = 0

    def _encode(self, clock: Clock) -> _Job:
        """Encode one batch (by count and bytes), up to a flush marker."""
        limit_items, limit_bytes = self.settings.max_batch_items, self.settings.max_batch_bytes
        parts: list[str] = []
        batch: list[Record] = []
        size = 12  # {"items":[]}
        marker: _Marker | None = None
        clock.sync()
        if self._carry is not None:
            text, rec = self._carry
            parts.append(text)
            batch.append(rec)
            size += len(text) + 1
            self._carry = None
        pop, add_part, add_rec = self._buf.popleft, parts.append, batch.append
        room = limit_items - len(parts)
        while room > 0:  # per record: this loop runs for every event, locals only
            try:
                rec = pop()
            except IndexError:
                break
            if rec.__class__ is _Marker:
                marker = rec
                with self._lock:
                    self._markers -= 1
                break
            try:
                text = rec[0](rec, clock)
            except Exception as exc:
                self._refused += 1
                self._problem(
                    DripDeliveryError(
                        f"a drip {KINDS.get(rec[0], 'record')} could not be encoded: {exc!r}",
                        code="ENCODE",
                    )
                )
                continue
            size += len(text) + 1
            if size > limit_bytes and parts:
                self._carry = (text, rec)
                break
            add_part(text)
            add_rec(rec)
            room -= 1
        self._inflight += len(batch)
        body = f'{{"items":[{",".join(parts)}]}}'.encode() if parts else None
        return _Job(body, batch, marker)

    def _sending(self) -> SenderThread:
        if self._jobs is None:
            self._jobs = SenderThread()
        return self._jobs

    def _finish(self, job: _Job) -> None:
        """Deliver ``job`` (or wait for the attempt in flight), then release its marker."""
        try:
            if job.body is not None:
                self._deliver(job.body, job.batch, job.call)
        finally:
            self._inflight = max(0, self._inflight - len(job.batch))
        if job.marker is not None:
            job.marker.set()

    def _get_sender(self) -> Sender:
        if self._sender is None:
            from ._transport import IngestSender

            self._sender = IngestSender(self.settings)
        return self._sender

    def _deliver(self, body: bytes, batch: list[Record], first: Call | None = None) -> None:
        """POST one batch until it is answered, refused, or a shutdown deadline passes;
        ``first`` is an attempt already in flight on the sender thread."""
        attempt = 0
        while True:
            try:
                if first is not None and first.wait():
                    call, first = first, None
                    result = call.result()
                else:
                    first = None
                    result = self._get_sender()(body)
            except DripError as exc:
                delay = _retry_delay(exc, attempt)
                if delay is None:
                    self._refuse(batch, f"the server refused the batch: {exc}")
                    return
                self._retries += 1
                attempt += 1
                logger.warning(
                    "drip: ingest attempt %d failed (%s); retrying %d records in %.2f s",
                    attempt,
                    exc,
                    len(batch),
                    delay,
                )
                self._problem(exc, logging.DEBUG)
                self._report_drops()
                if not self._sleep(delay):
                    self._undelivered += len(batch)
                    return
                continue
            except Exception as exc:  # a broken custom sender: do not loop on it
                self._refuse(batch, f"the ingest sender failed: {exc!r}")
                return
            self._batches += 1
            self._account(result, batch)
            return

    def _refuse(self, batch: list[Record], why: str) -> None:
        self._refused += len(batch)
        self._problem(
            DripDeliveryError(
                f"{len(batch)} drip records were not delivered: {why}",
                code="REFUSED",
                count=len(batch),
            ),
            logging.ERROR,
        )

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False if a shutdown deadline would pass first."""
        end = time.monotonic() + delay
        while True:
            if self._stop.is_set() and end > self._deadline:
                return False
            now = time.monotonic()
            if now >= end:
                return True
            self._stop.wait(end - now)

    def _account(self, result: IngestResult, batch: list[Record]) -> None:
        """Count a batch's answer: full (an entry per item) or compact (a letter per item)."""
        rejected: list[DripDeliveryError] = []
        for r in result.results:
            if r.status == "rejected":
                kind = KINDS.get(batch[r.index][0]) if 0 <= r.index < len(batch) else None
                code = r.code or "REJECTED"
                rejected.append(
                    DripDeliveryError(
                        f"the server rejected {kind or 'item'} {r.id}: {code}: {r.message or ''}",
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
        self._duplicates += duplicates
        self._rejected += failed
        self._sent += answered - duplicates - failed
        if rejected:
            logger.error(
                "drip: the server rejected %d of %d records (first: %s)",
                len(rejected),
                len(batch),
                rejected[0],
            )
            for exc in rejected:
                self._problem(exc, logging.DEBUG)
        missing = len(batch) - answered
        if missing > 0:  # should not happen; never count silently as sent
            self._refuse(batch[-missing:], "the server's answer lacks their results")


def _retry_delay(exc: DripError, attempt: int) -> float | None:
    """Seconds before the next attempt, or None: the SDK's one retry policy."""
    from ._transport import retry_delay

    return retry_delay(exc, attempt)


def _after_fork_in_child() -> None:
    for delivery in list(_live):
        delivery._reset()


def _shutdown_all_at_exit() -> None:
    for delivery in list(_live):
        if delivery._worker is not None and delivery._pid == os.getpid() and not delivery._closed:
            delivery.shutdown()


_hooked_pid = 0


def _hook_multiprocessing_exit() -> None:
    """A multiprocessing child ends with ``os._exit`` (no atexit) after running its finalizers:
    register the same shutdown there, once per process, if multiprocessing is in use."""
    global _hooked_pid
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _hooked_pid != os.getpid():
        _hooked_pid = os.getpid()
        util.Finalize(None, _shutdown_all_at_exit, exitpriority=100)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shutdown_all_at_exit)
