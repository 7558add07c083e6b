"""``Instrumentation``: one client's settings, delivery, strict mode and ``on_error`` together.

Every ``Drip`` / ``AsyncDrip`` owns one (created on first use); ``client.metered``,
``client.run``, ... delegate here. The module-level ``drip.metered`` & co. resolve the default
client's instrumentation when a call happens (``resolve``), never at decoration time.

Call-time problems (no customer, a quantity callable that raised, ...) go through
``Instrumentation.report``: counted, logged on the ``drip`` logger, passed to ``on_error``, and
raised in strict mode. Delivery problems never raise (see ``drip._delivery``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._config import Settings
from ._delivery import Delivery, DeliveryStats, FlushReport, Sender
from ._records import Record
from .errors import DripConfigurationError

if TYPE_CHECKING:
    from ._run import CustomerScope, RunContext

__all__ = ["Instrumentation", "resolve"]

logger = logging.getLogger("drip")
F = TypeVar("F", bound=Callable[..., Any])


class Instrumentation:
    """The instrumentation of one client: ``metered``, ``run``, ``customer``, ``flush``, ..."""

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
        #: the hot path's way in: a bound method, looked up once per run
        self.append: Callable[[Record], None] = self.delivery.append
        self._errors = 0
        self._last_error: str | None = None
        self._last_log: dict[str, float] = {}

    def report(self, exc: BaseException) -> None:
        """A call-time problem: count it, log it, pass it to ``on_error``; raise if strict."""
        self._errors += 1
        self._last_error = str(exc)
        _log_limited(self._last_log, exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                logger.exception("drip: the on_error callback raised")
        if self.strict:
            raise exc

    # -- the entry points (documented on the module-level functions in drip.instrument) -----

    def metered(self, meter: str, **options: Any) -> Callable[[F], F]:
        """``@client.metered(meter)``: like ``drip.metered``, recording into this client."""
        from .instrument import make_metered

        return make_metered(self, meter, **options)

    def run(self, workflow: str, **options: Any) -> RunContext:
        """``with client.run(workflow)``: like ``drip.run``, recording into this client."""
        return _run.RunContext(self, workflow, **options)

    def customer(self, customer_id: str) -> CustomerScope:
        """``with client.customer(id)``: the customer for everything inside."""
        return _run.CustomerScope(customer_id)

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


def _log_limited(last: dict[str, float], exc: BaseException) -> None:
    """Log a problem; the same problem at most once every 10 s (each one is counted)."""
    key = f"{type(exc).__name__}:{str(exc)[:60]}"  # the same site, not every site
    now = time.monotonic()
    if now - last.get(key, -1e9) >= 10.0:
        last[key] = now
        logger.warning("drip: %s", exc)


#: ``drip.testing.capture()`` pushes its instrumentation here: every record goes to it
_overrides: list[Instrumentation] = []
_default_client: Callable[[], Any] | None = None
_unconfigured_log: dict[str, float] = {}


def resolve(bound: Instrumentation | None) -> Instrumentation | None:
    """Where a record goes: a capture, else the client it was bound to, else the default.

    None when there is no default client because it cannot be configured (no API key): the
    call is then not recorded, which is logged (and raised under ``DRIP_STRICT=1``).
    """
    if _overrides:
        return _overrides[-1]
    if bound is not None:
        return bound
    global _default_client
    try:
        if _default_client is None:
            from ._default import default_client

            _default_client = default_client
        instrumentation: Instrumentation = _default_client()._instrumentation
        return instrumentation
    except DripConfigurationError as exc:
        problem = DripConfigurationError(f"drip is not configured, nothing is recorded: {exc}")
        _log_limited(_unconfigured_log, problem)
        if os.environ.get("DRIP_STRICT", "").strip().lower() in ("1", "true", "yes", "on"):
            raise problem from exc
        return None


# at the bottom: ``_run`` imports ``resolve`` from here (attributes are read at call time)
from . import _run  # noqa: E402
