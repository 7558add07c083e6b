"""A stop signal heard on a drip thread, for when the main thread cannot run drip's handler.

Python runs signal handlers on the main thread between bytecodes. A SIGTERM that lands just
before the main thread blocks in C (``multiprocessing``'s locks, a pipe read) only marks the
handler to run, and the block then lasts until something else wakes it: for a
``multiprocessing.Pool`` worker, whose pool holds the lock it waits for and sends it SIGTERM
(``Pool.terminate()``, the end of ``with Pool()``), that is never, so the pool hung. Without a
Python handler the kernel would have ended the worker.

``drip._sigwatch`` (C) puts a write of the signal's number to a pipe in front of Python's own
handler; the thread here reads it and calls ``on_signal(signum)`` (the lifecycle's: flush, then
end the process as the signal would have), whether or not the main thread ever runs its
handler. Each process watches with its own pipe: a fork child starts again
(``restart_in_child``), and the C handler stays silent in a process that has not watched yet.
Where the extension was not built, or gevent / eventlet replace threads with greenlets (a
thread blocked in ``os.read`` would stall their hub), nothing is watched: the main thread's
handler alone is what drip had before.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["die_by", "start", "watched"]

logger = logging.getLogger("drip")


def _load() -> Any:
    try:  # by name: optional, built on POSIX CPython only (setup.py)
        return importlib.import_module("drip._sigwatch")
    except ImportError:
        return None


_sigwatch: Any = _load()
#: the process whose pipe and thread are running (0: none)
_pid = 0
_fds: tuple[int, int] | None = None
_lock = threading.Lock()


def start(signals: Sequence[int], on_signal: Callable[[int], None]) -> bool:
    """Watch ``signals`` (each must have a Python handler already) in this process; True if a
    watching thread runs now. Safe from any thread; once per process."""
    global _pid, _fds
    if _sigwatch is None or "gevent" in sys.modules or "eventlet" in sys.modules:
        return False
    pid = os.getpid()
    with _lock:
        if _pid == pid:
            return True
        if _fds is not None:  # a fork child: the pipe is the parent's
            for fd in _fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _fds = None
        try:
            read, write = os.pipe()
            os.set_blocking(write, False)  # a signal handler never waits
            if not _sigwatch.watch(write, list(signals)):
                os.close(read)
                os.close(write)
                return False
        except (OSError, ValueError) as exc:
            logger.debug("drip: cannot watch stop signals: %s", exc)
            return False
        _fds = (read, write)
        _pid = pid
        thread = threading.Thread(
            target=_run, args=(read, on_signal), name="drip-signals", daemon=True
        )
        # the thread takes none of the process's signals itself: they go to the threads that
        # run the application (the C handler writes from whichever thread takes one)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return True


def _run(fd: int, on_signal: Callable[[int], None]) -> None:
    pid = os.getpid()
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        except OSError:
            return
        if not data or os.getpid() != pid:
            return
        for signum in data:
            try:
                on_signal(signum)
            except Exception:  # never end this thread: the next signal must be heard
                logger.exception("drip: handling signal %d failed", signum)


def watched(signum: int) -> bool:
    """Whether this process hears ``signum`` on its drip thread."""
    return _pid == os.getpid() and _sigwatch is not None and bool(_sigwatch.watching(signum))


def die_by(signum: int) -> None:
    """End the process by ``signum``'s default action (its exit status says so), from any
    thread: ``signal.signal`` only works on the main thread."""
    if threading.current_thread() is threading.main_thread() or _sigwatch is None:
        signal.signal(signum, signal.SIG_DFL)
    else:
        _sigwatch.default(signum)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
