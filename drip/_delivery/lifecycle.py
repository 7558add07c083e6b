"""When the process stops or forks: atexit, SIGTERM and SIGHUP, ``multiprocessing``, ``fork()``.

* ``atexit``: every live delivery of this process is shut down with its ``shutdown_timeout``.
* SIGTERM (how containers, systemd and Kubernetes stop a process): Python's default handler
  kills the process without running ``atexit``. When a client is made on the main thread (or
  failing that, when its first delivery starts there), a handler is installed that shuts
  every delivery down (bounded by ``shutdown_timeout``) and then, if the previous handler was
  the default, restores it and sends SIGTERM again, so the exit status is still the one
  SIGTERM gives. A handler the application installed before is chained: deliveries are
  flushed (not closed, the application may still record while it stops), then that handler
  runs. One installed later replaces this one; it then decides how the process ends (a
  ``sys.exit`` runs ``atexit``). A handler set to ``SIG_IGN`` is left alone. A container's
  init process (PID 1) is not ended by SIGTERM's default action: there deliveries are
  flushed and go on, as the process does. ``handle_signals=False`` / ``DRIP_HANDLE_SIGNALS=0`` opts out.
  SIGHUP (the terminal or SSH session of the process went away) also ends it by default without
  ``atexit``: it is handled the same way, with its own previous handler (left alone under
  ``nohup``, which ignores it).
  A server that handles SIGTERM itself and then restores the handler it found and raises the
  signal again (uvicorn does) ends the process without ``atexit`` after its graceful shutdown:
  what the requests it let finish recorded is flushed by ``flush_all`` from the web
  integrations when the application's lifespan ends.
* ``multiprocessing`` children end with ``os._exit`` (no ``atexit``) after their finalizers: a
  finalizer shuts deliveries down there. ``Pool`` workers are stopped with SIGTERM when the
  pool ends (``with Pool()``): the SIGTERM handler, inherited through fork, covers them, and
  a worker blocked on the pool's lock, whose main thread may never run it, is covered by the
  watching thread (``sigwatch``). A
  child ended by ``os._exit`` from user code, or by SIGKILL, gets no hook: the spool covers it.
* ``fork()``: the child starts with an empty buffer (the parent sends what it recorded) and
  re-sends the starts of runs the parent has not delivered yet (``unsent_run_starts``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from .._forks import after_fork_in_child, run_unseen
from .._records import encode_run_start
from . import sigwatch

if TYPE_CHECKING:
    from .._config import Settings
    from . import Delivery

__all__ = ["flush_all", "prepare", "register", "shutdown_all", "started", "unsent_run_starts"]

logger = logging.getLogger("drip")

_live: weakref.WeakSet[Delivery] = weakref.WeakSet()


def register(delivery: Delivery) -> None:
    _live.add(delivery)


def _mine() -> list[Delivery]:
    pid = os.getpid()
    return [d for d in list(_live) if d.pid == pid and d.started() and not d.buffer.closed]


def prepare(settings: Settings) -> None:
    """A client was made: on the main thread, put the SIGTERM hook in place now. Its first
    delivery may start on another thread (a web server's thread pool, a task worker), where
    no handler can be set, and would then leave SIGTERM unhooked for good."""
    if settings.handle_signals:
        _install_sigterm()
        _watch()
    _hook_uwsgi()


def flush_all(timeout: float | None = None) -> None:
    """Flush every live delivery of this process, each bounded by ``timeout`` (default: its
    ``shutdown_timeout``): an application is stopping, the process may end without ``atexit``
    (see the module's docstring) or go on (a test client's lifespan)."""
    for delivery in _mine():
        try:
            pending = delivery.flush(timeout).pending
        except Exception:  # never stand between the application and its end
            logger.exception("drip: flushing at the end of the application failed")
            continue
        if pending:  # said now: a process that ends without atexit would lose them unsaid
            logger.error(
                "drip: %d records were still waiting for the server when the application "
                "stopped; if the process now ends without atexit, those not in a spool are lost",
                pending,
            )


def started(delivery: Delivery) -> None:
    """A delivery's threads started: make sure the exit hooks of this process are in place."""
    _hook_multiprocessing_exit()
    if delivery.settings.handle_signals:
        _install_sigterm()
        _watch()


_exiting = False


def shutdown_all() -> None:
    """The process is ending (``atexit``, a ``multiprocessing`` child's finalizers, a Celery
    pool process): shut every live delivery down, each bounded by its ``shutdown_timeout``;
    what is left stays in the spool or is reported once as undelivered."""
    global _exiting
    _exiting = True  # a SIGTERM during this bounded flush lets it finish (see _on_sigterm)
    for delivery in _mine():
        delivery.shutdown()
    pid = os.getpid()
    for delivery in list(_live):  # records made after a shutdown: said in full before the end
        if delivery.pid == pid and delivery.buffer.closed:
            delivery.reporter.flush_drops()


atexit.register(shutdown_all)

# -- SIGTERM ----------------------------------------------------------------------------------

#: the signals that end a process by default without ``atexit``: SIGTERM (how containers,
#: systemd and Kubernetes stop a process) and SIGHUP (its terminal or SSH session went away)
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
#: the handler each signal had before drip's
_previous: dict[int, Any] = {}
_installed_pid = 0


def _install_sigterm() -> None:
    global _installed_pid
    if _installed_pid == os.getpid() or not _SIGNALS:
        return
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers; a later start on it will
    _installed_pid = os.getpid()
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if current is _on_sigterm:  # inherited through fork()
            continue
        if current is signal.SIG_IGN or current is None:
            continue  # ignored on purpose (nohup), or set outside Python: not ours to change
        try:
            signal.signal(signum, _on_sigterm)
        except (ValueError, OSError) as exc:  # pragma: no cover - e.g. an embedded interpreter
            logger.debug("drip: cannot install the handler of signal %d: %s", signum, exc)
            continue
        _previous[signum] = current


def _watch() -> None:
    """Hear the signals drip handles on a drip thread too (``sigwatch``): a main thread
    blocked in C when one came (a ``Pool`` worker at ``Pool.terminate()``) would not run the
    handler. From any thread; a fork child starts its own."""
    ours = [s for s in _SIGNALS if signal.getsignal(s) is _on_sigterm]
    if ours:
        sigwatch.start(ours, _from_watcher)


#: how long the watching thread leaves the signal to the main thread's handler
_MAIN_FIRST = 0.25


def _from_watcher(signum: int) -> None:
    """A signal drip handles, heard on the watching thread: if the main thread's handler has
    not taken it within ``_MAIN_FIRST`` (it is blocked, or the signal came in the window
    before a block), do what it would have done. An application's own handler (chained)
    and PID 1 are left to the main thread: only it can run a Python handler."""
    if signum not in _SIGNALS or signal.getsignal(signum) is not _on_sigterm:
        return
    if _is_app_handler(_previous.get(signum, signal.SIG_DFL)) or os.getpid() == 1:
        return
    deadline = time.monotonic() + _MAIN_FIRST
    while not (_stopping or _exiting) and time.monotonic() < deadline:
        time.sleep(0.01)
    _handle_sigterm(signum, None)


def _is_app_handler(previous: Any) -> bool:
    return callable(previous) and previous is not signal.default_int_handler


_stopping = False
#: the main thread's handler and the watching thread's: one of them stops the process
_stop_lock = threading.RLock()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    gevent = sys.modules.get("gevent")
    if gevent is not None and _in_gevent_hub(gevent):
        # gevent (monkey-patched: gunicorn's gevent workers, a gevent pool) runs signal
        # handlers in its event loop, where nothing may wait: the flush waits in a greenlet
        gevent.spawn(_handle_sigterm, signum, frame)
        return
    _handle_sigterm(signum, frame)


def _in_gevent_hub(gevent: Any) -> bool:
    hub = sys.modules.get("gevent.hub")  # asked without making a hub where there is none
    try:
        return hub is not None and isinstance(gevent.getcurrent(), hub.Hub)
    except Exception:  # not the gevent we know: do as without it
        return False


def _handle_sigterm(signum: int, frame: FrameType | None) -> None:
    global _stopping
    with _stop_lock:
        if _stopping or _exiting:
            # the process is already stopping and flushing (a second SIGTERM, one that
            # arrives during atexit or a multiprocessing child's exit, as ``Pool.terminate``
            # sends, or the watching thread got there first): that bounded flush finishes
            # and ends the process
            return
        _stopping = True
    previous = _previous.get(signum, signal.SIG_DFL)
    chained = _is_app_handler(previous)
    # a PID namespace's init (``CMD ["python", "app.py"]`` in a container): the kernel
    # ignores SIGTERM's default action for it, so without drip the process goes on (until
    # SIGKILL); it goes on here too, its deliveries flushed and still running
    goes_on = chained or os.getpid() == 1
    if goes_on:
        _stopping = False  # the process may keep running (and be sent SIGTERM again)
    for delivery in _mine():
        try:
            if goes_on:
                delivery.flush()
            else:
                delivery.shutdown()
        except Exception:  # never stand between the process and its end
            logger.exception("drip: flushing on SIGTERM failed")
    if chained:
        previous(signum, frame)
        return
    if goes_on:
        return
    sigwatch.die_by(signum)


# -- uWSGI ----------------------------------------------------------------------------------

_uwsgi_hooked = False


def _hook_uwsgi() -> None:
    """Under uWSGI, chain drip into its two Python hooks (each previous one runs after ours):

    * ``uwsgi.post_fork_hook``: uWSGI forks its workers in C and, unless
      ``--py-call-osafterfork``, runs none of Python's at-fork hooks; drip's resets run here
      (``drip._forks``), before the worker's first request. Without them a worker would use
      the master's delivery state and ids.
    * ``uwsgi.atexit``: a worker told to stop (SIGINT from the master) exits from its signal
      handler, where uWSGI calls this and then finalizes Python, whose ``atexit`` callbacks
      did not come in our runs of uWSGI 2.0.31: deliveries are shut down here.
    """
    global _uwsgi_hooked
    if _uwsgi_hooked:
        return
    _uwsgi_hooked = True
    try:  # the module of uWSGI's embedded interpreter, nowhere else
        uwsgi: Any = importlib.import_module("uwsgi")
    except ImportError:
        return
    if not hasattr(uwsgi, "opt"):  # not the embedded module
        return
    uwsgi.post_fork_hook = _chained(run_unseen, getattr(uwsgi, "post_fork_hook", None))
    uwsgi.atexit = _chained(shutdown_all, getattr(uwsgi, "atexit", None))


def _chained(ours: Any, previous: Any) -> Any:
    def hook() -> None:
        try:
            ours()
        finally:
            if callable(previous):
                previous()

    return hook


# -- multiprocessing --------------------------------------------------------------------------

_mp_hooked_pid = 0


def _hook_multiprocessing_exit() -> None:
    """A multiprocessing child ends with ``os._exit`` (no atexit) after running its finalizers:
    register the same shutdown there, once per process, if multiprocessing is in use."""
    global _mp_hooked_pid
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _mp_hooked_pid != os.getpid():
        _mp_hooked_pid = os.getpid()
        util.Finalize(None, shutdown_all, exitpriority=100)


# -- fork -------------------------------------------------------------------------------------


def _raw(rec: tuple[Any, ...], clock: object) -> str:
    """The encoder of a record that is already JSON text (a re-sent run start)."""
    text: str = rec[1]
    return text


def unsent_run_starts(delivery: Delivery) -> list[tuple[Any, ...]]:
    """In a fork child, before its reset: the run starts the parent has not had acknowledged
    (buffered, being encoded, or in an encoded batch), as records for the child's buffer."""
    starts: list[tuple[Any, ...]] = []
    for rec in [*delivery.encoding, *list(delivery.buffer.q)]:
        if isinstance(rec, tuple) and rec and rec[0] is encode_run_start:
            starts.append(rec)
    if delivery.carry is not None and delivery.carry[1][0] is encode_run_start:
        starts.append(delivery.carry[1])
    texts: list[tuple[Any, ...]] = []
    for batch in list(delivery.outbox):
        body = batch.body
        if body is None and batch.file is not None and delivery.spool is not None:
            try:
                body = delivery.spool.read(batch.file.path)
            except Exception:
                continue
        if body is None or b'"run.start"' not in body:
            continue
        for item in json.loads(body)["items"]:
            if item.get("type") == "run.start":
                texts.append((_raw, json.dumps(item, separators=(",", ":"))))
    return texts + starts


def _before_fork() -> None:
    """Give every run not delivered yet its id now: ids are made on first use, and a run
    whose id the parent and the child each made later would be two runs."""
    for delivery in list(_live):
        if delivery.pid != os.getpid():
            continue
        with contextlib.suppress(Exception):  # never stand in the way of a fork
            for rec in [*delivery.encoding, *list(delivery.buffer.q)]:
                if isinstance(rec, tuple) and rec and rec[0] is encode_run_start:
                    rec[1].id  # noqa: B018 - formats and keeps the id
            if delivery.carry is not None and delivery.carry[1][0] is encode_run_start:
                delivery.carry[1][1].id  # noqa: B018


@after_fork_in_child
def _after_fork_in_child() -> None:
    global _mp_hooked_pid, _stopping, _exiting
    _mp_hooked_pid = 0
    _stopping = _exiting = False
    for delivery in list(_live):
        delivery.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork)
