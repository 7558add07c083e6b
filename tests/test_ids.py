"""Ids and idempotency keys: unique per call, across processes, restarts and fork()."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from drip._ids import idempotency_key, new_id

SCRIPT = "from drip._ids import idempotency_key as k; print(' '.join(k('chg') for _ in range(50)))"


def test_keys_are_unique_per_call() -> None:
    keys = {idempotency_key("track") for _ in range(10_000)}
    assert len(keys) == 10_000


def test_ids_are_time_ordered_and_unique() -> None:
    ids = [new_id("evt") for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(i.startswith("evt_") and len(i) == 36 for i in ids)
    assert [i[4:16] for i in ids] == sorted(i[4:16] for i in ids)  # millisecond prefix


def test_separate_processes_and_restarts_never_share_keys() -> None:
    """Two runs of the same program (a restart) and a concurrent one: no key in common."""
    runs = [
        subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
        for _ in range(3)
    ]
    sets = [set(r.stdout.split()) for r in runs]
    assert all(len(s) == 50 for s in sets)
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2]) and not (sets[0] & sets[2])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_fork_child_draws_new_keys_and_ids() -> None:
    idempotency_key("warm")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        out = " ".join(
            [idempotency_key("chg") for _ in range(20)] + [new_id("evt") for _ in range(20)]
        )
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split())
    os.waitpid(pid, 0)
    parent = {idempotency_key("chg") for _ in range(20)} | {new_id("evt") for _ in range(20)}
    assert len(child) == 40
    assert not (child & parent)
    child_token = next(iter(k for k in child if k.startswith("chg_"))).split("_")[1]
    parent_token = next(iter(k for k in parent if k.startswith("chg_"))).split("_")[1]
    assert child_token != parent_token
