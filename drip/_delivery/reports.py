"""What delivery reports: counters, ``FlushReport``, ``DeliveryStats``, and the one way a
delivery problem reaches the user (the ``drip`` logger plus ``on_error``, never an exception).

Counts are of records (a run start, an event, a usage record, a run end each count one).
A record ends in exactly one of: sent (created, updated, or ``duplicate``), rejected (the server
refused that item), refused (the server refused a whole batch it was in), dropped (``overflow=
"drop"`` or after ``shutdown``), undelivered (the retry budget or a shutdown deadline ran out
and there is no spool); until then it is pending (in memory) or spooled (on disk, waiting for
this process or a later one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DripDeliveryError

__all__ = ["Counters", "DeliveryStats", "FlushReport", "Reporter"]

logger = logging.getLogger("drip")


@dataclass(frozen=True)
class FlushReport:
    """What a ``flush()`` or ``shutdown()`` did while it waited (counts of records)."""

    #: delivered (created, updated, or already there: ``duplicate``)
    sent: int
    #: will never be delivered: rejected, refused, dropped, or undelivered (budget, deadline)
    failed: int
    #: still in memory when the call returned (the timeout expired), including a request in
    #: flight at a shutdown deadline, which may still land (``stats()`` counts it when it does)
    pending: int
    #: not delivered yet but safe on disk in the spool: this process or a later one sends them
    spooled: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.pending == 0 and self.spooled == 0


@dataclass(frozen=True)
class DeliveryStats:
    """Counters since the client (or, after ``fork()``, this process) started."""

    recorded: int
    sent: int
    duplicates: int
    rejected: int
    refused: int
    dropped: int
    undelivered: int
    pending: int
    batches: int
    retries: int
    #: call-time problems of the instrumentation (no customer, bad quantity, ...)
    errors: int = 0
    last_error: str | None = None
    #: records on disk in the spool, not acknowledged yet
    spooled: int = 0
    #: records of earlier processes found in the spool and sent by this one
    replayed: int = 0
    #: times a caller waited because the buffer was full (back-pressure)
    blocked: int = 0


class Counters:
    """The mutable counts behind the reports; each is changed by one thread only, or under a
    lock, so reading them from another thread gives a consistent-enough snapshot."""

    __slots__ = ("batches", "blocked", "dropped", "duplicates", "refused", "rejected",
                 "replayed", "retries", "sent", "spooled", "undelivered")  # fmt: skip

    def __init__(self) -> None:
        self.sent = self.duplicates = self.rejected = self.refused = 0
        self.dropped = self.undelivered = self.batches = self.retries = 0
        self.spooled = self.replayed = self.blocked = 0

    def delivered(self) -> int:
        return self.sent + self.duplicates

    def failed(self) -> int:
        return self.rejected + self.refused + self.dropped + self.undelivered


class Reporter:
    """Logs a delivery problem and hands it to ``on_error``; never raises."""

    def __init__(self, on_error: Callable[[BaseException], object] | None) -> None:
        self.on_error = on_error
        #: re-entrant: the SIGTERM handler flushes (``flush_drops``) on the main thread, which
        #: may be inside ``dropped`` holding this lock when the signal arrives
        self._lock = threading.RLock()
        self._drops: dict[str, int] = {}
        self._last_drop_report = -1e9

    def problem(self, exc: BaseException, level: int = logging.WARNING) -> None:
        logger.log(level, "drip: %s", exc)
        if self.on_error is not None:
            try:
                self.on_error(exc)
            except Exception:
                logger.exception("drip: the on_error callback raised")

    def failure(self, code: str, count: int, why: str) -> None:
        """Records that will never be delivered: one report with the count."""
        self.problem(
            DripDeliveryError(
                f"{count} drip records were not delivered: {why}", code=code, count=count
            ),
            logging.ERROR,
        )

    def dropped(self, code: str) -> None:
        """One record dropped (on the caller's thread). Reported when it happens: the first
        drop at once, later ones at most once a second, with the number since the last report."""
        with self._lock:
            self._drops[code] = self._drops.get(code, 0) + 1
            now = time.monotonic()
            if now - self._last_drop_report < 1.0:
                return
            self._last_drop_report = now
            drops, self._drops = self._drops, {}
        self._report_drops(drops)

    def flush_drops(self) -> None:
        """Report drops counted since the last report (at flush / shutdown)."""
        with self._lock:
            drops, self._drops = self._drops, {}
        self._report_drops(drops)

    def _report_drops(self, drops: dict[str, int]) -> None:
        for code, count in drops.items():
            self.problem(
                DripDeliveryError(
                    f"{count} drip records were dropped: {_DROP_REASONS.get(code, code)}",
                    code=code,
                    count=count,
                ),
                logging.ERROR,
            )


_DROP_REASONS = {
    "BUFFER_FULL": 'the buffer was full and overflow="drop" is set',
    "CLOSED": "they were recorded after the client was shut down",
}
