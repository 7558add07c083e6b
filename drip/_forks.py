"""What each module resets in a ``fork()`` child, in one list.

Modules register their child-side reset here (``after_fork_in_child``); it runs from Python's
at-fork hook (``os.fork``, ``multiprocessing``), and from ``run_unseen`` where a server forks
its workers in C without running those hooks: uWSGI, unless ``--py-call-osafterfork``
(``drip._delivery.lifecycle`` calls it from ``uwsgi.post_fork_hook``). Either way once per
process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

__all__ = ["after_fork_in_child", "run_unseen"]

F = TypeVar("F", bound=Callable[[], None])

_resets: list[Callable[[], None]] = []
#: the process the resets last ran in (this one, at import: nothing to reset)
_ran_in = os.getpid()


def _run() -> None:
    global _ran_in
    _ran_in = os.getpid()
    for reset in _resets:
        reset()


def after_fork_in_child(reset: F) -> F:
    """Run ``reset`` in every ``fork()`` child, in the order of registration (a decorator)."""
    _resets.append(reset)
    return reset


def run_unseen() -> None:
    """In a child forked without Python's at-fork hooks: run the resets (once)."""
    if _ran_in != os.getpid():
        _run()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run)
