"""``drip.run(...)`` and ``drip.customer(...)``: the scopes that metered calls record into.

A run is made on the client: its id (``run_…``) exists the moment it is entered, its start and
end are two records in the delivery buffer, and nothing waits for the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from . import otel
from ._checks import (
    check_customer,
    check_metadata,
    check_name,
    check_text,
    clean_text,
    quantity_problem,
)
from ._forks import after_fork_in_child
from ._ids import new_id
from ._recorder import DISCARD, Fallback, Lane, Recorder, overrides, resolve
from ._records import (
    REQUEST_END,
    REQUEST_EVENT,
    REQUEST_START,
    encode_manual,
    encode_run_end,
    encode_run_start,
    event_id,
    next_seq,
    seq_run_id,
)  # fmt: skip
from .context import SCOPE
from .errors import DripValidationError

__all__ = [
    "DeferredRun", "Run", "RunContext", "begin_deferred", "begin_run", "leave_run", "restore",
]  # fmt: skip

F = TypeVar("F", bound=Callable[..., Any])
#: an exception like these ends a run CANCELLED rather than FAILED
CANCELLATIONS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)
MAX_ERROR_MESSAGE = 2000
_perf = time.perf_counter_ns


_id_lock = threading.Lock()
#: held while a deferred run's start is recorded (``DeferredRun``)
_start_lock = threading.Lock()


@after_fork_in_child
def _new_id_lock_in_child() -> None:
    # another thread (the delivery worker formats run ids) may hold the lock at fork(): in the
    # child that thread is gone and the lock would stay held, hanging the child's first run id
    global _id_lock, _start_lock
    _id_lock = threading.Lock()
    _start_lock = threading.Lock()


def _start_current_run_before_fork() -> None:
    # A deferred run (a web request's) not started yet would get its id in the child from the
    # child's own id prefix, and its start from each side: two runs. Started here, in the
    # parent, it has one id, and its start is among those a fork child re-sends.
    run = SCOPE.get()[1]
    if isinstance(run, DeferredRun):
        with contextlib.suppress(Exception):  # never stand in the way of a fork
            run.id  # noqa: B018 - records the start and formats the id


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_start_current_run_before_fork)


class Run:
    """An open run: ``with drip.run("workflow") as run`` gives one; ``run.id`` is ready."""

    __slots__ = (
        "_append",
        "_context",
        "_fast",
        "_id",
        "_json",
        "_lane",
        "_recorder",
        "_t0",
        "_token",
        "correlation_id",
        "customer_id",
        "external_run_id",
        "metadata",
        "parent_run_id",
        "workflow",
    )

    #: the parent event of this run's top-level events when the run was continued from
    #: another process (``drip.context.extract``); see ``drip._remote.RemoteRun``
    remote_parent: str | None = None

    def __init__(
        self,
        context: RunContext,
        recorder: Recorder | None,
        customer_id: str | None,
        parent_run_id: str | None,
        correlation_id: str | None,
    ) -> None:
        self._id: str | None = None
        self.workflow = context.workflow
        self.customer_id = customer_id
        self.parent_run_id = parent_run_id
        self.external_run_id = context.external_run_id
        self.correlation_id = correlation_id
        self.metadata = context.metadata
        self._context = context
        self._recorder = recorder
        self._lane: Lane = DISCARD if recorder is None else recorder.lane
        self._append: Callable[[Any], None] = self._lane.append
        self._t0 = _perf()
        self._token: Any = None
        self._json: str | None = None  # set by the delivery worker
        #: the run's JSON head for fast records (``drip._records``), set by the first metered
        #: call; None keeps metered calls on the general path (always, for a continued run)
        self._fast: str | None = None

    @property
    def id(self) -> str:
        """The run's id (``run_…``), the same for you, its events and the server.

        Made on first use (by you, a child run or the delivery worker), so opening a run does
        not pay for formatting an id nobody asked for yet.
        """
        run_id = self._id
        if run_id is None:
            with _id_lock:
                run_id = self._id
                if run_id is None:
                    run_id = self._id = new_id("run")
        return run_id

    def event(
        self,
        event_type: str,
        quantity: float | None = None,
        *,
        units: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str | None:
        """Record an event in this run now; returns its id (None if it could not be recorded).

        Inside a metered call of this run, the call is the event's parent.
        """
        try:
            check_name(event_type, "event_type")
            problem = None if quantity is None else quantity_problem(quantity)
            if problem:
                raise DripValidationError(f"quantity {problem}", field="quantity")
            if units is not None or description is not None:  # rare: skip two calls
                check_text(units, "units")
                check_text(description, "description")
            if metadata is not None:
                metadata = check_metadata(metadata)
        except (DripValidationError, TypeError) as exc:
            if self._recorder is not None:
                self._recorder.report(exc, f"the event {str(event_type)[:80]!r}")
            return None
        return event_id(self._record(event_type, quantity, units, description, metadata))

    def _record(
        self,
        event_type: str,
        quantity: float | None,
        units: str | None,
        description: str | None,
        metadata: dict[str, Any] | None,
        encoder: Callable[..., str] = encode_manual,
    ) -> int:
        """``event`` for values the caller has already proven valid: no check; the event's
        sequence number (``event_id`` formats its id). ``encoder``: another of the manual layout.

        For code that records the same shape again and again and proves it valid once (a web
        middleware's request event): a value that fails the rules ``event`` enforces would be
        refused by the server, so everything else must call ``event``.
        """
        _, run, parent = SCOPE.get()
        seq = next_seq()
        span = None if otel.CV is None else otel.span_context()
        self._append(
            (
                encoder,
                self,
                parent if run is self else None,
                seq,
                _perf(),
                event_type,
                quantity,
                units,
                description,
                metadata,
                span,
            )
        )
        return seq

    def __repr__(self) -> str:
        return f"<drip.Run {self.id} workflow={self.workflow!r} customer={self.customer_id!r}>"


class DeferredRun(Run):
    """A run whose start is recorded only once something refers to it (a web request's).

    Most requests are a run that nothing inside looks at: then ``end_alone`` records its start,
    its one event and its end together, as flat records that hold no ``Run`` (see
    ``drip._records``, "Request records"), and this object dies with the request. Whatever
    refers to the run first — its ``id`` (a child run, baggage, the handler), a record appended
    to it (``run.event``, a metered call) — records its start at that moment, and from then on
    it is a plain ``Run``. Its id comes from a sequence number (``seq_run_id``), so it is the
    same whichever way the run is recorded.
    """

    __slots__ = ("_pending", "_seq")
    _pending: bool  # the start is not recorded yet
    _seq: int  # the run's number (its id, and its one event's when recorded alone)

    @property
    def id(self) -> str:
        if self._pending:
            self._start()
        run_id = self._id
        if run_id is None:  # the same text whoever formats it: no lock
            run_id = self._id = seq_run_id(self._seq)
        return run_id

    def _start_first(self, rec: Any) -> None:
        # ``_append`` until the start is recorded: the first record of the run records it
        self._start()
        self._lane.append(rec)

    def _start(self) -> None:
        with _start_lock:  # another thread may refer to the run at the same moment
            if not self._pending:
                return
            self._lane.append((encode_run_start, self))
            self._append = self._lane.append
            self._pending = False

    def end_alone(
        self,
        parts: tuple[str, str, str, str],
        status_code: int | None,
        done: int | None,
        exc: BaseException | None,
    ) -> bool:
        """End the run with its one event, if nothing referred to it (False: nothing done).

        ``parts`` are the run's and event's fixed JSON (``drip._records.request_parts``),
        ``status_code`` the event's, ``done`` when the response was complete (the end of the
        event's duration; None: now). The run's start, the event and the end are added to the
        lane at once; the scope it was opened in is restored. Must be called where ``leave_run``
        would be.
        """
        # No lock: another thread that refers to the run at this very moment (it would have to
        # outlive the handler) records a second start of the same id, which the server takes
        # as a duplicate, and its record after the end, as it would for any run.
        if not self._pending:
            return False
        self._pending = False
        self._append = self._lane.append  # what comes after (a late thread) names the run
        t = _perf()
        if exc is None:
            status, code, message = "COMPLETED", None, None
        else:
            status, code, message = run_end(exc)
        span = None if otel.CV is None else otel.span_context()
        seq, t0, correlation = self._seq, self._t0, self.correlation_id
        rec = (
            REQUEST_START, seq, self.customer_id, parts, self.external_run_id, correlation, t0,
            None,
            REQUEST_EVENT, seq, parts, correlation, t, status_code,
            ((t if done is None else done) - t0) // 1000,
            span and span.span_id,
            REQUEST_END, seq, status, code, message, t, None, None,
        )  # fmt: skip
        lane = self._lane
        q = lane.q
        if len(q) < lane.soft:
            q.extend(rec)  # flat: nothing the GC tracks is left behind
        else:
            lane.append(rec[:8])
            lane.append(rec[8:16])
            lane.append(rec[16:])
        restore(self._token)
        return True


def run_end(exc: BaseException | None) -> tuple[str, str | None, str | None]:
    """How a run ends for ``exc``: (status, error code, error message)."""
    if exc is None:
        return "COMPLETED", None, None
    if isinstance(exc, CANCELLATIONS):
        return "CANCELLED", type(exc).__name__, clean_text(str(exc)) or None
    return "FAILED", type(exc).__name__, clean_text((str(exc) or repr(exc))[:MAX_ERROR_MESSAGE])


def end_run(run: Run, exc: BaseException | None) -> None:
    """Record ``run``'s end, COMPLETED or as ``exc`` ends it (see ``run_end``)."""
    run._append((encode_run_end, run, *run_end(exc), _perf()))


def begin_run(
    shape: Any,
    recorder: Recorder | None,
    fallback: Fallback,
    customer_id: str | None,
    correlation_id: str | None = None,
    deferred: bool = False,
    problem: Exception | None = None,
) -> Run:
    """Open a run in the current context and record its start; ``leave_run`` ends it.

    ``shape`` holds what a run is opened from, already checked: ``workflow``,
    ``external_run_id`` and ``metadata`` (a ``RunContext``, or an owner's own object: a web
    middleware opens one run per request without building a ``RunContext``). Inside a run the
    new one is its child and inherits its customer, client and correlation id.

    ``deferred``: when it is not a child, a ``DeferredRun``, whose start waits until something
    refers to it. ``problem``: why the customer given is unusable: reported, and the run has
    no customer (inheriting one would bill someone else).
    """
    customer, parent, _ = SCOPE.get()
    bound = recorder or (parent._recorder if parent is not None else None)
    instr = resolve(bound, fallback)
    customer = (customer_id or customer) if problem is None else None
    correlation = correlation_id or (parent.correlation_id if parent else None)
    if correlation is None:
        if otel.CV is None:
            otel.refresh()
        if otel.CV is not None:
            correlation = otel.trace_id_hex(otel.span_context())
    if customer is None and instr is not None:
        try:
            instr.report(
                problem
                or DripValidationError(
                    f"drip.run({shape.workflow!r}) has no customer: pass customer_id= (or "
                    "external_customer_id=) or open it inside drip.customer(...); this run "
                    "is not recorded",
                    field="customer_id",
                )
            )
        finally:
            instr = None
    run: Run
    if deferred and parent is None:
        run = pending = DeferredRun(shape, instr, customer, None, correlation)
        pending._seq = next_seq()
        pending._pending = True
        pending._append = pending._start_first
    else:
        run = Run(shape, instr, customer, None if parent is None else parent.id, correlation)
        run._append((encode_run_start, run))
    run._token = SCOPE.set((customer, run, None))
    return run


D = TypeVar("D", bound=DeferredRun)


def begin_deferred(
    cls: type[D],
    fallback: Fallback,
    workflow: str,
    customer_id: str,
    external_run_id: str | None,
    alone: bool = False,
) -> D | None:
    """``begin_run(shape, None, fallback, customer_id, None, deferred=True)`` for the case a web
    request is in nearly always: no run is open here. None (nothing done) when one is: then
    ``begin_run`` makes the request's run its child. ``alone``: open it as no run's child even
    so (the run open here is not this request's parent).

    A request is the hottest path there is: the run, an instance of ``cls`` (a ``DeferredRun``
    that may carry the owner's own fields, so that a request is one object, not two), is
    filled in here in one frame, without ``Run.__init__``; ``workflow``, ``customer_id`` and
    ``external_run_id`` are already checked. ``leave_run`` or ``end_alone`` ends it.
    """
    if not alone and SCOPE.get()[1] is not None:
        return None
    instr = overrides[-1] if overrides else fallback()
    correlation = None
    if otel.CV is None:
        otel.refresh()
    if otel.CV is not None:
        correlation = otel.trace_id_hex(otel.span_context())
    run = cls.__new__(cls)
    run._id = None
    run.workflow = workflow
    run.customer_id = customer_id
    run.parent_run_id = None
    run.external_run_id = external_run_id
    run.correlation_id = correlation
    run.metadata = None
    run._context = None  # type: ignore[assignment]  # no RunContext ends it
    run._recorder = instr
    run._lane = DISCARD if instr is None else instr.lane
    run._json = run._fast = None
    run._seq = next_seq()
    run._pending = True
    run._append = run._start_first  # a cycle until the run ends (``end_alone``, ``_start``)
    run._t0 = _perf()
    run._token = SCOPE.set((customer_id, run, None))
    return run


def leave_run(run: Run, exc: BaseException | None) -> None:
    """Record the end of a run ``begin_run`` opened and restore the context it was opened in.

    Must be called in that context (a context manager's exit is).
    """
    if exc is None:  # the common end, without asking run_end
        run._append((encode_run_end, run, "COMPLETED", None, None, _perf()))
    else:
        end_run(run, exc)
    restore(run._token)


class RunContext:
    """What ``drip.run(...)`` returns: a context manager (sync and async) and a decorator.

    Each ``with`` (or decorated call) opens a new run; a run inside a run is its child.
    """

    def __init__(
        self,
        recorder: Recorder | None,
        fallback: Fallback,
        workflow: str,
        *,
        customer_id: str | None = None,
        external_run_id: str | None = None,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        external_customer_id: str | None = None,
    ) -> None:
        self.workflow: str = check_name(workflow, "workflow")  # type: ignore[assignment]
        check = check_name  # None means "not given" (optional): only given values are checked
        #: a bad id comes from data: a call-time problem, reported when the run opens
        self._customer_problem: Exception | None = None
        try:
            where = f"drip.run({workflow!r})"
            self.customer_id = check_customer(customer_id, external_customer_id, where)
        except (DripValidationError, TypeError) as exc:
            if customer_id is not None and external_customer_id is not None:
                raise  # both given: a mistake in the code, not in the data
            self.customer_id, self._customer_problem = None, exc
        self.external_run_id = check(external_run_id, "external_run_id", optional=True)
        self.correlation_id = check(correlation_id, "correlation_id", optional=True)
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.metadata = check_metadata(metadata)
        self._recorder = recorder
        self._fallback = fallback
        self._open: list[Run] = []

    def start(self) -> Run:
        """Open a run in the current context (what ``__enter__`` does)."""
        run = begin_run(self, self._recorder, self._fallback, self.customer_id,
                        self.correlation_id, problem=self._customer_problem)  # fmt: skip
        self._open.append(run)
        return run

    def end(self, exc: BaseException | None) -> None:
        """Close the innermost run this context opened here (what ``__exit__`` does)."""
        run = SCOPE.get()[1]
        if run is None or run._context is not self:
            if not self._open:
                return
            run = self._open[-1]
        self._open.remove(run)
        leave_run(run, exc)

    def __enter__(self) -> Run:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(exc)

    async def __aenter__(self) -> Run:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(exc)

    def __call__(self, fn: F) -> F:
        """Decorate a function (sync or async): every call runs in a new run."""
        if self._customer_problem is not None:  # a constant given to a decorator: a mistake
            raise self._customer_problem
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"drip.run cannot decorate the generator {fn.__qualname__}: open the run with "
                "`with drip.run(...)` inside it"
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return run_sync  # type: ignore[return-value]


def restore(token: Any) -> None:
    # A ValueError means the scope is left in another context than it was entered in (a
    # generator closed by the garbage collector, another task): the context it changed is not
    # this one, so this one is left alone.
    # not contextlib.suppress: this runs at every run exit and suppress costs ~10x more
    try:  # noqa: SIM105
        SCOPE.reset(token)
    except ValueError:
        pass
