"""The bounded in-process buffer: the only part of delivery the caller's thread touches.

``append`` is a length check and a ``list.extend`` while the buffer is below its soft limit
(no lock, no I/O). The list holds ``WIDTH`` elements per record (``drip._records``: a fast
record flat, any other padded), so its length is ``WIDTH`` times the records and the bounds are
kept in elements. The worker takes a batch's worth in one slice (see ``worker._encode``): a list,
not a deque, because ``list.extend`` of a tuple copies it without an iterator (about 260 fewer
instructions per metered call) and a slice takes many records at once. Past it, the slow path wakes the worker, and at ``max_buffer`` records:

* ``overflow="block"`` (the default): the caller waits until the worker has taken records
  out. The wait is bounded because the worker always makes room: it delivers, or spills to the
  spool, or — when the retry budget has run out and there is no spool — reports the oldest
  batch as undelivered. Nothing is dropped.
* ``overflow="drop"`` (opt-in): the new record is dropped and the drop reported at once (log,
  ``on_error``, ``stats().dropped``) — except run starts and run ends, which are always kept,
  so no event is ever kept whose run start was discarded and no run stays open for ever.

A record that arrives after ``shutdown`` is dropped (``CLOSED``) and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

from .._records import (
    PAD,
    REQUEST_END,
    REQUEST_START,
    WIDTH,
    Record,
    encode_run_end,
    encode_run_start,
)  # fmt: skip
from .reports import Counters, Reporter

__all__ = ["Buffer", "Marker"]

#: records never dropped by ``overflow="drop"``: a run's start and end
_STRUCTURAL = frozenset({encode_run_start, encode_run_end, REQUEST_START, REQUEST_END})


def flat(rec: Any) -> tuple[Any, ...]:
    """A record as the ``WIDTH`` elements it takes in the buffer."""
    if rec[0].__class__ is int:  # a flat record (fast, request)
        out: tuple[Any, ...] = rec
        return out
    return (rec, *PAD)


class Marker:
    """Put in the buffer by ``flush``; set by the sender once everything before it is done."""

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


class Buffer:
    """Records waiting for the worker. Lives as long as its client (``append`` is bound once
    by the recorder); ``reset`` empties it in a ``fork()`` child."""

    def __init__(
        self,
        max_buffer: int,
        overflow: str,
        reporter: Reporter,
        start: Callable[[], None],
        fork_check: Callable[[], None],
    ) -> None:
        self.max = max_buffer
        self.limit = max_buffer * WIDTH  # in elements
        self.drop = overflow == "drop"
        self.reporter = reporter
        self._start = start
        self._fork_check = fork_check
        self.counters = Counters()
        self.reset()

    def reset(self) -> None:
        """Empty, with fresh locks (in a fork() child another thread may have held them)."""
        #: re-entrant: a SIGTERM handler may flush while this thread is inside ``append``
        self.lock = threading.RLock()
        self.room = threading.Condition(threading.Lock())
        self.pid = os.getpid()
        self.q: list[Any] = []
        #: below this many elements ``append`` takes the fast path; 0 until the worker runs,
        #: so the first record (and the first after a fork) starts it
        self.soft = 0
        self.markers = 0
        self.closed = False
        self.waiting = 0
        self.wake = threading.Event()
        #: threads that must never wait for room (the worker's own, e.g. an on_error callback)
        self.exempt: set[int] = set()

    def running(self, batch_items: int) -> None:
        """The worker runs: open the fast path."""
        self.batch = min(batch_items, self.max)
        self.soft = self.batch * WIDTH

    def busy(self, busy: bool) -> None:
        """The worker is taking records out (True) or about to sleep (False).

        While it works it needs no wake-up: the fast path then runs up to ``max`` records, so a
        tight loop does not take the slow path (two Python calls) for every record while the
        worker drains the buffer. Before it sleeps, the soft bound returns to a batch. The slow
        path that wakes the worker opens the fast path the same way (``True``).
        """
        with self.lock:
            if not self.closed and self.soft:
                self.soft = (self.max if busy else self.batch) * WIDTH

    # -- the caller's side --------------------------------------------------------------------

    def append(self, rec: Any) -> None:
        """Buffer one record; never raises, never drops with the default settings."""
        q = self.q
        if len(q) < self.soft:
            q.extend(flat(rec))  # one C call: a record's elements are never split
        else:
            self._append_slow(rec)

    def put(self, rec: Record) -> None:
        """Buffer one record without any check (a fork child's re-sent run starts)."""
        self.q.extend(flat(rec))

    def _append_slow(self, rec: Any) -> None:
        q = self.q
        if self.soft and len(q) < self.limit:
            q.extend(flat(rec))  # the worker runs and is behind: make sure it is awake
            if not self.wake.is_set():
                self.wake.set()
                # and come back here only at ``max``: until the worker takes the GIL and says
                # it is busy, a tight loop would otherwise take this path for every record
                self.busy(True)
            return
        with self.lock:
            if self.pid != os.getpid():  # a fork() the at-fork hook did not see
                self._fork_check()
            if self.closed:
                self.counters.dropped += 1
                self.reporter.dropped("CLOSED")
                return
            if len(self.q) < self.limit:
                self.q.extend(flat(rec))
                self._start()
                return
            if self.drop:
                if rec[0] in _STRUCTURAL:  # kept past the bound: a run is never split
                    self.q.extend(flat(rec))
                    return
                self.counters.dropped += 1
                self.wake.set()
                self.reporter.dropped("BUFFER_FULL")
                return
        self._wait_for_room()
        self.q.extend(flat(rec))

    def _wait_for_room(self) -> None:
        """Back-pressure: wait until the worker has taken records out (see the module doc)."""
        if threading.get_ident() in self.exempt:
            return
        self.counters.blocked += 1
        with self.room:
            self.waiting += 1
            try:
                while len(self.q) >= self.limit and not self.closed:
                    self.wake.set()
                    self.room.wait(0.05)
            finally:
                self.waiting -= 1

    # -- the worker's side --------------------------------------------------------------------

    def made_room(self) -> None:
        """Called by the worker after taking records out."""
        if self.waiting:
            with self.room:
                self.room.notify_all()

    def push_marker(self) -> Marker:
        marker = Marker()
        with self.lock:
            self.markers += 1
            self.q.extend((marker, *PAD))
        self.wake.set()
        return marker

    def records(self) -> int:
        return len(self.q) // WIDTH - self.markers
