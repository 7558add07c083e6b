"""A run that continues in another process: ``drip.context.inject`` and ``extract``.

Service A, inside a run, calls service B; ``inject(headers)`` puts A's run id, customer, current
event (the parent of what B records) and workflow into the request's W3C ``baggage``. B, with
``with drip.context.extract(request.headers):``, records into A's run: its metered calls are
events of that run whose parent is A's calling event, a ``drip.run`` there is a child run of it.
B never ends A's run.

The two processes deliver on their own schedules, so B's events may reach the server before A's
run start. B therefore sends a start of the same run (same id, customer and workflow) first; the
server keeps whichever start arrives first and answers the other as a duplicate. When B's wins,
the run keeps A's id, customer and workflow but not A's external id or metadata.

Only trusted callers may continue a run: baggage names the customer to bill, so the web
middlewares extract it only with ``trust_baggage=True``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import Any

from . import _checks, context
from ._baggage import merge, parse
from ._checks import check_name
from ._default import default_recorder
from ._recorder import resolve
from ._records import encode_run_start, event_id
from ._scopes import Run, end_run, restore
from .context import SCOPE

__all__ = ["Continuation", "RemoteRun", "extract", "inject"]

logger = logging.getLogger("drip")


class _Carried:
    """What ``Run.__init__`` reads from its ``RunContext``, for a run opened elsewhere."""

    __slots__ = ("external_run_id", "metadata", "workflow")

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.external_run_id = None
        self.metadata = None


class RemoteRun(Run):
    """Another process's run, continued here: records into it, never starts or ends it."""

    __slots__ = ("remote_parent",)

    def __repr__(self) -> str:
        return f"<drip.Run {self.id} (continued) customer={self.customer_id!r}>"


def _header(headers: Any, name: str = "baggage") -> tuple[str | None, str]:
    """The value of ``name`` in a mapping of headers, whatever its case, and the key it has.

    A bytes value (``requests`` sends what the application gave as it is) is read as latin-1,
    as HTTP clients encode str headers, so the header goes out with the same bytes.
    """
    value = headers.get(name)
    key = name
    if value is None and isinstance(headers, Mapping):
        for k in headers:
            if isinstance(k, str) and k.lower() == name:
                value, key = headers[k], k
                break
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    return value, key


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current run, customer and event to ``headers`` as W3C baggage; returns them.

    With OpenTelemetry in use, its propagator runs first, so ``traceparent`` (and its own
    baggage) go along. Outside any run or customer only OpenTelemetry's headers are added.
    """
    if "opentelemetry.propagate" in sys.modules:
        try:
            sys.modules["opentelemetry.propagate"].inject(headers)
        except Exception:
            logger.debug("drip: OpenTelemetry's propagator failed", exc_info=True)
    customer, run, seq = SCOPE.get()
    values: dict[str, str] = {}
    if run is not None:
        values["run"] = run.id
        values["workflow"] = run.workflow
        customer = run.customer_id or customer
        parent = event_id(seq) if seq is not None else run.remote_parent
        if parent is not None:
            values["parent"] = parent
    if customer is not None:
        # a customer named by the application's own id travels as such, for the server to
        # resolve on the other side too
        values["customer_ext" if _is_external(customer) else "customer"] = customer
    if values:
        current, key = _header(headers)
        if current is not None and not isinstance(current, str):
            return headers  # a value no HTTP client sends as text: not drip's to rewrite
        merged = merge(current, values)
        if merged is None and current is not None:
            del headers[key]  # it held only another run's drip members, and ours do not fit
        elif merged is not None and merged != current:
            headers[key] = merged
    return headers


def _is_external(customer: str) -> bool:
    external = getattr(_checks, "ExternalId", None)  # the str subclass for external ids
    return external is not None and type(customer) is external


def _customer(values: Mapping[str, str]) -> str | None:
    """The carried customer: a Drip id, or the application's own id when the SDK has them."""
    external = getattr(_checks, "ExternalId", None)
    if values.get("customer_ext") is not None and external is not None:
        checked = _valid(values["customer_ext"], "external_customer_id")
        return None if checked is None else external(checked)
    return _valid(values.get("customer"), "customer_id")


def extract(headers: Any) -> Continuation:
    """What ``headers`` carry (a mapping with a ``baggage`` header); enter it to continue there."""
    value, _ = _header(headers)
    return Continuation(parse(value))


def _valid(value: str | None, field: str, prefix: str = "") -> str | None:
    if value is None:
        return None
    try:
        checked = check_name(value, field)
    except Exception:  # DripValidationError, TypeError: not ours to raise from a header
        checked = None
    if checked is None or not checked.startswith(prefix):
        logger.warning("drip: ignoring a malformed %s in incoming baggage", field)
        return None
    return checked


class Continuation:
    """What arrived in baggage: ``with`` it to record into that run (or for that customer).

    False when nothing usable arrived; entering it then changes nothing and yields None.
    """

    def __init__(self, values: Mapping[str, str]) -> None:
        self.customer_id = _customer(values)
        run_id = _valid(values.get("run"), "run_id", "run_")
        self.run_id = run_id if self.customer_id is not None else None
        self.parent_event_id = _valid(values.get("parent"), "parent_event_id", "evt_")
        self.workflow = _valid(values.get("workflow"), "workflow") or "remote"
        #: the parent of the run itself (set by ``child``; a carried run's parent is unknown)
        self.parent_run_id: str | None = None
        self._tokens: list[Any] = []
        self._runs: list[Run | None] = []

    def __bool__(self) -> bool:
        return self.customer_id is not None

    def __repr__(self) -> str:
        return f"<drip.context.Continuation run={self.run_id!r} customer={self.customer_id!r}>"

    def child(self, workflow: str, run_id: str) -> Continuation:
        """A run planned here, child of the carried one, to be continued by several executions.

        For work that may run more than once under one run, such as a task queue's task and
        its retries: every execution enters the returned continuation (same ``run_id``, so one
        run on the server) and the last one calls ``end``. With only a customer carried, the
        planned run has no parent.
        """
        planned = Continuation({})
        planned.customer_id = self.customer_id
        planned.run_id = check_name(run_id, "run_id")
        planned.workflow = check_name(workflow, "workflow")  # type: ignore[assignment]
        planned.parent_run_id = self.run_id
        return planned

    def __enter__(self) -> Run | None:
        if self.customer_id is None:
            self._tokens.append(None)
            self._runs.append(None)
            return None
        current = SCOPE.get()
        if self.run_id is None:  # a customer without a run: as drip.customer(...)
            self._tokens.append(SCOPE.set((self.customer_id, current[1], current[2])))
            self._runs.append(None)
            return None
        instr = resolve(None, default_recorder)
        run = RemoteRun(
            _Carried(self.workflow),  # type: ignore[arg-type]
            instr,
            self.customer_id,
            self.parent_run_id,
            None,
        )
        run._id = self.run_id
        run.remote_parent = self.parent_event_id
        run._append((encode_run_start, run))  # see the module docstring: first start wins
        self._tokens.append(SCOPE.set((self.customer_id, run, None)))
        self._runs.append(run)
        return run

    def end(self, exc: BaseException | None = None) -> None:
        """End the entered run here: COMPLETED, or as ``drip.run`` ends for ``exc``.

        Only for a run this process owns (a planned ``child``); a run carried from a caller is
        the caller's to end. Call it inside the ``with``.
        """
        run = self._runs[-1] if self._runs else None
        if run is None:
            return
        end_run(run, exc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._runs.pop()
        token = self._tokens.pop()
        if token is not None:
            restore(token)

    async def __aenter__(self) -> Run | None:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(None, None, None)


# drip.context is below this layer: it is handed these, never imports them
context._propagation = (inject, extract)
