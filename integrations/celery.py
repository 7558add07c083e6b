"""Celery: a task published inside a run runs as a child run of it, retries included.

::

    from celery import Celery
    from drip.integrations import celery as drip_celery

    app = Celery("tasks", broker=...)
    drip_celery.instrument(app)            # in the publisher and in the worker

    with drip.run("import", customer_id=cid):
        load.delay(path)                   # the worker runs `load` as a child run of "import"

- Publishing (``before_task_publish``, in the publisher's context): the current run, customer
  and event travel in the message headers as drip baggage (``drip_baggage``).
- Executing (``task_prerun``): the task runs in a run whose workflow is the task's name and
  whose parent is the publisher's run; published with only a customer in effect, it is that
  customer's own run; published with neither, it is not metered. Everything ``@drip.metered``
  records in the task lands in that run.
- The run's id comes from the task id, so a retried task (``task_retry``: the same id again)
  continues the same run: one run on the server, each execution's events once. The run ends
  after the last execution (``task_postrun``), FAILED with the exception's class when the task
  failed for good (``task_failure``).
- Eager tasks (``task_always_eager``, ``.apply()``) are not published; they run as child runs of
  the caller's run, in the caller's context.
- Prefork workers: drip's delivery restarts in each forked child, so what pool processes
  record is sent from the child itself. A pool process ends with ``os._exit`` (no ``atexit``,
  no ``multiprocessing`` finalizers): on ``worker_process_shutdown``, just before, its
  delivery is shut down as at ``atexit`` (a warm shutdown, ``--max-tasks-per-child``).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from drip import context
from drip._delivery.lifecycle import shutdown_all

from ._requires import requires
from ._web import logger

signals = requires("celery.signals", extra="celery")

__all__ = ["HEADER", "instrument", "uninstrument"]

#: the message header that carries drip's baggage from the publisher to the worker
HEADER = "drip_baggage"
_STATE = "drip_continuation"
_apps: dict[int | None, Any] = {}
_connected = False


def _run_id(task_id: str) -> str:
    """The run of a task: the same for every execution (retries) of one task id."""
    try:
        return f"run_{uuid.UUID(task_id).hex}"
    except (ValueError, TypeError, AttributeError):
        return f"run_{hashlib.sha256(str(task_id).encode()).hexdigest()[:32]}"


def _ours(app: Any) -> bool:
    return None in _apps or id(app) in _apps


def _before_publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    try:
        if headers is None or HEADER in headers:  # a retry: keeps its first publisher's run
            return
        carrier = context.inject({})
        if carrier.get("baggage"):
            headers[HEADER] = carrier["baggage"]
    except Exception:
        logger.exception("drip: could not carry the run into a Celery task")


def _carried(task: Any) -> Any:
    request = task.request
    value = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    if value is None and getattr(request, "is_eager", False):
        value = context.inject({}).get("baggage")  # not published: the caller's own context
    return None if value is None else context.extract({"baggage": value})


def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is None or not _ours(getattr(task, "app", None)):
        return
    try:
        carried = _carried(task)
        if not carried:
            return
        planned = carried.child(task.name, _run_id(task_id))
        planned.__enter__()
        setattr(task.request, _STATE, planned)
    except Exception:
        logger.exception("drip: the Celery task runs unmetered")


def _failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    planned = getattr(getattr(sender, "request", None), _STATE, None)
    if planned is not None:
        planned.error = exception


def _postrun(task: Any = None, state: str | None = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    planned = getattr(request, _STATE, None)
    if planned is None:
        return
    try:
        setattr(request, _STATE, None)
        if state != "RETRY":  # a retry comes back to the same run; the last execution ends it
            planned.end(getattr(planned, "error", None))
    finally:
        planned.__exit__(None, None, None)


def _process_shutdown(**_: Any) -> None:
    # a pool process is about to end with os._exit: its buffer would go with it. Shut down,
    # not only flushed: what the server did not take stays in the spool or is reported
    shutdown_all()


_SIGNALS = (
    ("before_task_publish", _before_publish),
    ("task_prerun", _prerun),
    ("task_failure", _failure),
    ("task_postrun", _postrun),
    ("worker_process_shutdown", _process_shutdown),
)


def instrument(app: Any = None) -> None:
    """Meter the tasks of ``app`` (every Celery app when None); call it where tasks are
    published and in the worker (for a prefork worker, before the pool forks: at import)."""
    global _connected
    _apps[id(app) if app is not None else None] = app
    if not _connected:
        for name, handler in _SIGNALS:
            getattr(signals, name).connect(handler, weak=False)
        _connected = True


def uninstrument(app: Any = None) -> None:
    """Stop metering ``app``'s tasks (all of them when None)."""
    global _connected
    if app is None:
        _apps.clear()
    else:
        _apps.pop(id(app), None)
    if not _apps and _connected:
        for name, handler in _SIGNALS:
            getattr(signals, name).disconnect(handler)
        _connected = False
