"""Client-side ids and idempotency keys.

Ids are time-ordered: 48 bits of Unix milliseconds then 80 random bits, as 32 hex characters
behind a prefix (``run_``, ``evt_``, ``use_``). They are made where a record is created, so a
nested event can name its parent and a run handle has ``.id`` with no round trip.

Idempotency keys are ``<prefix>_<process token>_<counter>``: the token is 64 random bits drawn
per process and drawn again in a ``fork()`` child, the counter counts calls in this process. So
a key is unique per call, across processes, restarts and forks, and, because it is made once per
call before the first attempt, stable across that call's retries. (The published 0.1.2 client
hashed a counter that starts at 1 in every process, so separate workers made equal keys.)
"""

from __future__ import annotations

import itertools
import os
import random
import time

from ._forks import after_fork_in_child

__all__ = ["idempotency_key", "new_id"]

# random.getrandbits is ~20x cheaper than uuid4 and the module reseeds its generator in a
# forked child; SystemRandom seeds the token so two processes never share it.
_rand = random.Random(random.SystemRandom().getrandbits(128))


def _new_token() -> str:
    return f"{random.SystemRandom().getrandbits(64):016x}"


_token = _new_token()
_counter = itertools.count(1)
_pid = os.getpid()


@after_fork_in_child
def _after_fork_in_child() -> None:
    global _token, _counter, _rand, _pid
    _token = _new_token()
    _counter = itertools.count(1)
    _rand = random.Random(random.SystemRandom().getrandbits(128))
    _pid = os.getpid()


def _check_fork() -> None:
    # a fork no at-fork hook saw (uWSGI forks its workers in C): two workers would make the
    # same keys, and the server would answer the second worker's calls as replays of the first's
    if _pid != os.getpid():
        _after_fork_in_child()


def new_id(prefix: str) -> str:
    """A new time-ordered id such as ``run_0193f2c4a1b27c9e5d3f01a2b3c4d5e6``."""
    _check_fork()
    return f"{prefix}_{((time.time_ns() // 1_000_000) << 80) | _rand.getrandbits(80):032x}"


def idempotency_key(prefix: str) -> str:
    """A new idempotency key, unique per call and across processes, restarts and forks."""
    _check_fork()
    return f"{prefix}_{_token}_{next(_counter):x}"
