"""What delivery reports: ``FlushReport`` and ``DeliveryStats`` (errors: ``DripDeliveryError``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeliveryStats", "FlushReport"]


@dataclass(frozen=True)
class FlushReport:
    """What a ``flush()`` or ``shutdown()`` did while it waited (counts of records)."""

    #: delivered (created, updated, or already there: ``duplicate``)
    sent: int
    #: will never be delivered: rejected, refused, dropped (buffer full or after shutdown)
    failed: int
    #: still buffered or in flight when the call returned (the timeout expired)
    pending: int

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.pending == 0


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
