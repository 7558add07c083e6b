"""Delivery: how recorded usage reaches the server, exactly once, without ever blocking on I/O.

The recorder calls five things: ``append(record)`` (the hot path), ``flush``, ``aflush``,
``shutdown`` and ``stats``. Behind them, by concern:

* ``buffer`` — the bounded buffer the caller appends to; back-pressure (default) or opt-in drops.
* ``worker`` — a daemon thread that encodes batches and writes them to the spool.
* ``sender`` — a daemon thread that sends batches in order through the client's transport, one
  request in flight, with the retry policy, a budget and poison isolation.
* ``spool`` — the optional disk spool (``spool_dir`` / ``DRIP_SPOOL_DIR``) and its replay.
* ``lifecycle`` — atexit, SIGTERM, ``multiprocessing`` children and ``fork()``.
* ``reports`` — ``FlushReport``, ``DeliveryStats`` and how problems are reported.

The guarantees, and what survives what, are in ``docs/delivery.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._config import LONGEST_WAIT, Settings
from .._records import WIDTH
from ..errors import DripDeliveryError
from ..models import IngestResult
from . import lifecycle
from .buffer import Buffer, Marker
from .reports import Counters, DeliveryStats, FlushReport, Reporter
from .sender import report_outage, run_sender
from .spool import Spool
from .worker import Batch, run_worker

__all__ = ["Delivery", "DeliveryStats", "FlushReport", "Sender"]

logger = logging.getLogger("drip")

#: one attempt at ``POST /v1/ingest``: the encoded body in, the parsed answer out
Sender = Callable[[bytes], IngestResult]


class Delivery:
    """One client's delivery. ``append`` is the only method on the hot path."""

    def __init__(
        self,
        settings: Settings,
        *,
        sender: Sender | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        make_sender: Callable[[], Sender] | None = None,
    ) -> None:
        self.settings = settings
        self._given_sender = sender
        self._make_sender = make_sender
        self.reporter = Reporter(on_error)
        self.buffer = Buffer(
            settings.max_buffer, settings.overflow, self.reporter, self._start, self._fork_check
        )
        #: the hot path: bound once, survives ``fork()`` (the buffer is reset in place)
        self.append: Callable[[Any], None] = self.buffer.append
        self.spool: Spool | None = None
        if settings.spool_dir:
            where, key = settings.spool_identity or (settings.base_url, settings.api_key)
            try:
                self.spool = Spool(settings.spool_dir, where, key, settings.spool_max_bytes)
            except OSError as exc:
                self.reporter.problem(
                    DripDeliveryError(
                        f"the spool directory {settings.spool_dir!r} cannot be used ({exc}); "
                        "delivering without a spool",
                        code="SPOOL",
                    ),
                    logging.ERROR,
                )
        #: the server's answers say it takes ``events`` items (kept in a ``fork()`` child: the
        #: same server); until one does, the worker sends ``event`` items only
        self.columns = False
        #: ... and takes them ``packed`` (``drip.models.IngestEvents``)
        self.packed = False
        self._reset()
        lifecycle.register(self)
        if self.spool is not None:
            self.replay()  # what earlier processes left: claimed now (renames), sent first

    def _reset(self) -> None:
        """Fresh state: at construction, and in a ``fork()`` child (the parent sends its own)."""
        self.pid = os.getpid()
        self.buffer.reset()
        self.counters = Counters()
        self.buffer.counters = self.counters
        self.cond = threading.Condition()
        self.outbox: deque[Batch] = deque()
        #: records in the outbox (the first batch is the one being sent)
        self.queued = 0
        #: the elements (``WIDTH`` per record) the worker took out and is encoding; the record
        #: that did not fit a batch
        self.encoding: list[Any] = []
        self.carry: tuple[str, Any] | None = None
        self.stop = threading.Event()
        self.deadline = float("inf")
        self.worker_done = False
        self.spool_failed = False
        self.down_since: float | None = None
        #: failed attempts in a row
        self.failures = 0
        self.outage_reported = False
        self.outage_failed = 0
        #: the server refused the API key (401/403) and has not accepted it since
        self.key_refused = False
        #: the sender is inside a request (its outcome unknown until it returns)
        self.in_request = False
        self._threads: list[threading.Thread] = []
        self._send: Sender | None = self._given_sender

    # -- threads ------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the worker and sender threads (called under the buffer lock)."""
        if self._threads or self.buffer.closed:
            return
        for name, body in (("drip-delivery", run_worker), ("drip-delivery-sender", run_sender)):
            thread = threading.Thread(target=body, args=(self,), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()
        self.buffer.exempt.update(t.ident for t in self._threads if t.ident is not None)
        self.buffer.running(self.settings.max_batch_items)
        lifecycle.started(self)

    def started(self) -> bool:
        return bool(self._threads)

    def get_send(self) -> Sender:
        if self._send is None:
            if self._make_sender is not None:
                self._send = self._make_sender()
            else:
                from .._transport import IngestSender

                self._send = IngestSender(self.settings)
        return self._send

    def gave_up(self) -> bool:
        return self.stop.is_set() and time.monotonic() >= self.deadline

    def sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False if a shutdown deadline passes first."""
        end = time.monotonic() + delay
        while True:
            if self.stop.is_set() and end > self.deadline:
                return False
            now = time.monotonic()
            if now >= end:
                return True
            self.stop.wait(end - now)

    def spool_batch(self, batch: Batch) -> None:
        """Write an encoded batch to the spool (worker thread only)."""
        assert self.spool is not None and batch.body is not None
        try:
            batch.file = self.spool.write(batch.body, batch.count)
        except OSError as exc:
            self.spool_failed = True
            self.reporter.problem(
                DripDeliveryError(
                    f"writing to the spool failed ({exc}); delivering without a spool",
                    code="SPOOL",
                ),
                logging.ERROR,
            )

    def replay(self) -> None:
        """Queue the batches earlier processes left in the spool, and start sending them."""
        assert self.spool is not None
        for other in self.spool.of_other_keys():
            logger.warning(
                "drip: %d batches of another API key (%s) for this server wait in the spool %s; "
                "this process does not send them. If that key was rotated and these records "
                "belong to this account: drip spool replay %s --api-key <this key>",
                other.batches, other.key, other.dir, other.dir,
            )  # fmt: skip
        files, problems = self.spool.claim_orphans()
        for problem in problems:
            self.reporter.problem(DripDeliveryError(problem, code="SPOOL_CORRUPT"), logging.ERROR)
        if not files:
            return
        logger.info("drip: replaying %d batches from the spool %s", len(files), self.spool.dir)
        with self.cond:
            for file in files:
                self.outbox.append(Batch(None, file.count, None, file))
                self.queued += file.count
                self.counters.replayed += file.count
            self.cond.notify_all()
        with self.buffer.lock:
            self._start()

    def release_spooled(self) -> None:
        """While the server refuses the key: a flush whose records are all on disk (or sent)
        returns now, reporting them spooled, instead of waiting its whole timeout for a key
        that will not be fixed within it."""
        with self.cond:
            for batch in self.outbox:
                if batch.count and batch.file is None:
                    return
                if batch.marker is not None:
                    batch.marker.set()

    def release_markers(self) -> None:
        with self.cond:
            for batch in self.outbox:
                if batch.marker is not None:
                    batch.marker.set()

    # -- fork ---------------------------------------------------------------------------------

    def _fork_check(self) -> None:
        if self.pid != os.getpid():
            self.after_fork()

    def after_fork(self) -> None:
        """In a ``fork()`` child: start afresh, but re-send the starts of the parent's runs
        that were not acknowledged yet, so the child's events find their run on the server
        (a start the parent also sends is stored once: the server de-duplicates run ids)."""
        starts = lifecycle.unsent_run_starts(self)
        self.reporter = Reporter(self.reporter.on_error)
        self.buffer.reporter = self.reporter
        self._reset()
        for rec in starts:
            self.buffer.put(rec)
        if self.spool is not None:
            try:
                self.spool.after_fork()
            except OSError as exc:  # the directory went away: never the parent's files
                self.spool = None
                self.reporter.problem(
                    DripDeliveryError(
                        f"the spool directory {self.settings.spool_dir!r} cannot be used in "
                        f"this fork() child ({exc}); delivering without a spool",
                        code="SPOOL",
                    ),
                    logging.ERROR,
                )

    # -- counts -------------------------------------------------------------------------------

    def on_disk(self) -> int:
        return sum(b.count for b in list(self.outbox) if b.file is not None)

    def _pending(self) -> int:
        memory = self.buffer.records() + len(self.encoding) // WIDTH + (self.carry is not None)
        return memory + self.queued - self.on_disk()

    def _counts(self) -> tuple[int, int]:
        return self.counters.delivered(), self.counters.failed()

    def _report_since(self, before: tuple[int, int]) -> FlushReport:
        self.reporter.flush_drops()
        sent, failed = self._counts()
        return FlushReport(
            sent - before[0], failed - before[1], max(0, self._pending()), self.on_disk()
        )

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.settings.shutdown_timeout
        # NaN and negatives: no wait; inf and 1e308: the longest wait (timers overflow past it)
        return min(max(0.0, timeout), LONGEST_WAIT)

    def _marker(self) -> Marker | None:
        if threading.get_ident() in self.buffer.exempt:
            # on the worker or the sender itself (an ``on_error`` callback that flushes): the
            # marker waits for this very thread, so waiting would only stall delivery (each
            # report for the whole timeout); say what is settled now instead
            return None
        with self.buffer.lock:
            self._fork_check()
            if self.buffer.closed or not (self._pending() or self.queued):
                return None
            marker = self.buffer.push_marker()
            self._start()
        return marker

    # -- flush / shutdown / stats -------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> FlushReport:
        """Wait until every record buffered before this call is settled (or ``timeout``)."""
        before = self._counts()
        marker = self._marker()
        if marker is not None:
            marker.done.wait(self._timeout(timeout))
        return self._report_since(before)

    async def aflush(self, timeout: float | None = None) -> FlushReport:
        """``flush`` for asyncio code: waits without blocking the event loop."""
        before = self._counts()
        marker = self._marker()
        if marker is not None:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            marker.waiters.append((loop, fut))
            if marker.done.is_set():
                fut.set_result(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(fut, self._timeout(timeout))
        return self._report_since(before)

    def shutdown(self, timeout: float | None = None) -> FlushReport:
        """Flush (bounded), stop the threads; what is left stays in the spool or is reported
        once as undelivered. Records made later are dropped (``CLOSED``) and reported."""
        timeout = self._timeout(timeout)
        self.deadline = time.monotonic() + timeout
        before = self._counts()
        marker = self._marker()
        with self.buffer.lock:
            self.buffer.closed = True
            self.buffer.soft = 0
        if marker is not None:
            marker.done.wait(timeout)
        self.stop.set()
        self.buffer.wake.set()
        # time for the threads to notice the deadline, and to write what is left to disk
        grace = 2.0 if self.spool is not None else 0.1
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, self.deadline + grace - time.monotonic()))
        # a request still in flight may yet land: it stays pending (not failed) in the report;
        # so does the batch the sender is settling when this runs on it (``on_error``)
        on_sender = len(self._threads) > 1 and self._threads[1] is threading.current_thread()
        busy = self.in_request or on_sender
        unanswered = 0
        with self.cond:
            if self.in_request and not on_sender and self.outbox:
                first = self.outbox[0]
                unanswered = first.count if first.file is None else 0
            kept = deque(
                b for n, b in enumerate(self.outbox) if b.file is not None or (busy and n == 0)
            )
            left = self.queued - sum(b.count for b in kept)
            self.outbox, self.queued = kept, sum(b.count for b in kept)
            lost = left + self.buffer.records() + len(self.encoding) // WIDTH
            lost += self.carry is not None
            self.buffer.q.clear()
            self.buffer.markers = 0
            self.encoding, self.carry = [], None
        self.counters.undelivered += lost
        report_outage(self)
        report = self._report_since(before)
        if lost:
            self.reporter.failure(
                "UNDELIVERED", lost, f"the shutdown timeout ({timeout:g} s) passed"
            )
        if unanswered:
            # pending, not failed (the answer may yet come), but at exit it dies with the
            # process: said once, never lost silently
            self.reporter.problem(
                DripDeliveryError(
                    f"{unanswered} drip records were in a request the server had not answered "
                    f"when the shutdown timeout ({timeout:g} s) passed: they may not have been "
                    "delivered",
                    code="UNANSWERED",
                    count=unanswered,
                ),
                logging.ERROR,
            )
        if report.spooled and self.key_refused and self.spool is not None:
            logger.error(
                "drip: the server refused the API key: %d records were not delivered and wait "
                "in the spool %s. A process with the same key replays them once the server "
                "accepts it; if the key was rotated: drip spool replay %s --api-key <new key>",
                report.spooled, self.spool.dir, self.spool.dir,
            )  # fmt: skip
        elif report.spooled:
            logger.warning(
                "drip: %d records were not delivered yet and wait in the spool %s for the "
                "next process", report.spooled, self.spool.dir if self.spool else "",
            )  # fmt: skip
        elif self.spool is not None:
            self.spool.close()
        if not (len(self._threads) > 1 and self._threads[1].is_alive()):
            self.close_sender()  # else the sender thread closes it when its request returns
        return report

    def close_sender(self) -> None:
        """Close the HTTP client of a sender this delivery made (never one it was given)."""
        send, self._send = self._send, self._given_sender
        if send is not None and send is not self._given_sender:
            with contextlib.suppress(Exception):
                send.close()  # type: ignore[attr-defined]

    def stats(self, errors: int = 0, last_error: str | None = None) -> DeliveryStats:
        c = self.counters
        pending = max(0, self._pending())
        spooled = self.on_disk()
        sent, failed = self._counts()
        return DeliveryStats(
            recorded=sent + failed - c.dropped + pending + spooled - c.replayed,
            sent=c.sent,
            duplicates=c.duplicates,
            rejected=c.rejected,
            refused=c.refused,
            dropped=c.dropped,
            undelivered=c.undelivered,
            pending=pending,
            batches=c.batches,
            retries=c.retries,
            errors=errors,
            last_error=last_error,
            spooled=spooled,
            replayed=c.replayed,
            blocked=c.blocked,
        )
