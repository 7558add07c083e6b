"""``Recorder``: one client's way into delivery, with its strict mode, ``on_error`` and stats.

Every ``Drip`` / ``AsyncDrip`` owns one (created on first use). Runs and metered calls append
their records to it; nothing here knows about clients or the default client. Where a record
goes is decided by ``resolve``: a ``drip.testing.capture()`` in effect, else the recorder the
call was bound to, else the *fallback* the caller handed down (the module-level API hands down
the default client's recorder; nothing below ``drip.instrument`` ever looks it up).

Call-time problems (no customer, a quantity callable that raised, ...) go through
``Recorder.report``: counted, logged on the ``drip`` logger, passed to ``on_error``, and
raised in strict mode. Delivery problems never raise (see ``drip._delivery``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ._config import Settings
from ._delivery import Delivery, DeliveryStats, FlushReport, Sender
from ._records import Record

__all__ = ["DISCARD", "Fallback", "Lane", "ListLane", "Recorder", "log_limited", "resolve"]

logger = logging.getLogger("drip")

#: hands down the recorder of last resort (the default client's), or None when there is none
Fallback = Callable[[], "Recorder | None"]


class Lane(Protocol):
    """Where the hot path puts records: the contract between recording and delivery.

    A metered call inside a run does, inline (no call into Python code)::

        q = lane.q
        if len(q) < lane.soft:
            q += record             # the fast lane: extend in C, the fast record kept flat
        else:
            lane.append(record)     # the slow lane: start the worker, wake it, back-pressure

    so the fast lane costs no Python frame. Only fast records (``drip._records.FAST``) take the
    fast lane; every other record goes through ``append``. ``soft`` is how many elements may
    wait before the slow lane must see the next record (0 forces every record through
    ``append``); ``q`` may be replaced (after ``fork()``) and is read again on every call. The
    delivery ``Buffer`` is a lane; ``drip._records.unflatten`` reads a lane's records back.
    """

    q: Any
    soft: int

    def append(self, record: Record) -> None: ...


class ListLane:
    """A lane into a list (or any ``append``-able, ``extend``-able) that never needs the slow
    lane; its records are read back with ``drip._records.unflatten``."""

    __slots__ = ("append", "q", "soft")

    def __init__(self, q: Any) -> None:
        self.q = q
        self.soft = sys.maxsize
        self.append: Callable[[Record], None] = q.append


#: the lane of a run that is not recorded (its problem was reported once): keeps nothing
DISCARD = ListLane(deque(maxlen=0))


class Recorder:
    """The recording side of one client: ``append`` (the hot path), ``report``, flush, stats."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_error: Callable[[BaseException], Any] | None = None,
        sender: Sender | None = None,
        make_sender: Callable[[], Sender] | None = None,
    ) -> None:
        self.settings = settings
        self.strict = settings.strict
        self._on_error = on_error
        self.delivery = Delivery(
            settings, sender=sender, on_error=on_error, make_sender=make_sender
        )
        #: the hot path's way in (see ``Lane``): the delivery's buffer, looked up once per run
        self.lane: Lane = self.delivery.buffer
        self.append: Callable[[Record], None] = self.delivery.append
        self._errors = 0
        self._last_error: str | None = None
        self._last_log: dict[str, float] = {}

    def report(self, exc: BaseException, lost: str | None = None) -> None:
        """A call-time problem: count it, log it, pass it to ``on_error``; raise if strict.
        ``lost``: what was not recorded because of it, said in the log."""
        self._errors += 1
        self._last_error = str(exc)
        log_limited(self._last_log, exc, lost)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                logger.exception("drip: the on_error callback raised")
        if self.strict:
            raise exc

    def flush(self, timeout: float | None = None) -> FlushReport:
        """Wait (at most ``timeout``, default ``shutdown_timeout``) until all is sent."""
        return self.delivery.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> FlushReport:
        """``flush`` without blocking the event loop."""
        return await self.delivery.aflush(timeout)

    def shutdown(self, timeout: float | None = None) -> FlushReport:
        """Flush (bounded), then stop the worker; later records are dropped and reported."""
        return self.delivery.shutdown(timeout)

    def stats(self) -> DeliveryStats:
        """Counters: recorded, sent, duplicates, rejected, dropped, pending, errors, ..."""
        return self.delivery.stats(self._errors, self._last_error)


#: problems remembered by ``log_limited`` (a long process meets ever new ones: bounded)
_LOGGED_MAX = 1024


def log_limited(last: dict[str, float], exc: BaseException, lost: str | None = None) -> None:
    """Log a problem (and what it kept from being recorded); the same problem at most once
    every 10 s (each one is counted)."""
    key = f"{type(exc).__name__}:{str(exc)[:60]}:{lost}"  # the same site, not every site
    now = time.monotonic()
    if now - last.get(key, -1e9) >= 10.0:
        if len(last) >= _LOGGED_MAX:  # keys carry values from calls: forget the settled ones
            for old in [k for k, t in last.items() if now - t >= 10.0] or list(last):
                del last[old]
        last[key] = now
        if lost is None:
            logger.warning("drip: %s", exc)
        else:
            logger.warning("drip: %s was not recorded: %s", lost, exc)


#: ``drip.testing.capture()`` pushes its recorder here: every record goes to it
overrides: list[Recorder] = []


def _no_fallback() -> Recorder | None:
    return None


def resolve(bound: Recorder | None, fallback: Fallback = _no_fallback) -> Recorder | None:
    """Where a record goes: a capture, else the recorder it was bound to, else the fallback.

    None means the call is not recorded (the fallback has already said why).
    """
    if overrides:
        return overrides[-1]
    if bound is not None:
        return bound
    return fallback()
