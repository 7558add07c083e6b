"""DRIP_BASE_URL=local: the local server inside the process, same wire, no key needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import drip
from drip import Drip, AsyncDrip
import asyncio

client = Drip()
assert client.base_url.startswith("http://127.0.0.1:") and client.ping().ok
customer = client.create_customer(external_customer_id="local-user")
with client.run(workflow="local-flow", customer_id=customer.id) as run:
    client.metered(meter="calls")(lambda: None)()
assert client.flush(10).ok
assert client.get_run(run.id).totals.event_count == 1

async def main():
    async with AsyncDrip(api_key="sk_test_...") as other:  # a placeholder key: the local one
        assert other.base_url == client.base_url       # the same embedded server
        again = await other.create_customer(external_customer_id="local-user")
        assert again.id == customer.id and again.is_duplicate

asyncio.run(main())
print("ok", customer.id)
"""


def test_local_mode_end_to_end(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DRIP_BASE_URL": f"local:{tmp_path / 'd' / 'x.db'}",
           "DRIP_API_KEY": "sk_live_for_a_remote_server"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok cus_")
    assert (tmp_path / "d" / "x.db").exists()
    # a second process over the same file sees the first one's data
    out2 = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace('"local-user")\nwith', '"local-user")\nassert customer.is_duplicate\nwith')],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out2.returncode == 0, out2.stderr
    assert out2.stdout.split()[1] == out.stdout.split()[1]


FAILING = """
import logging, sys, time
import drip
import drip._local as local

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
starts = []  # the starts that failed
real = local._cannot_start
def counted(*args):
    starts.append(1)
    return real(*args)
local._cannot_start = counted

@drip.metered(meter="calls", customer_id="cus_any")
def work(x):
    return x + 1

total = sum(work(i) for i in range(2000))
with drip.run(workflow="w", customer_id="cus_any") as run:
    total += work(0)
try:
    drip.drip.create_customer(external_customer_id="someone")
except drip.DripConfigurationError as exc:
    print("core:", exc)
print("total", total, "starts", len(starts))
"""


@pytest.mark.parametrize("kind", ["not a database", "a directory", "a folder that cannot be made"])
def test_a_local_server_that_cannot_start_breaks_no_call_and_says_why(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "x.db"
    if kind == "not a database":
        path.write_bytes(b"my notes, not a database\n")
    elif kind == "a directory":
        path.mkdir()
    else:
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "x.db"
    env = {"PATH": "/usr/bin:/bin", "DRIP_BASE_URL": f"local:{path}"}
    out = subprocess.run(
        [sys.executable, "-c", FAILING], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    # the metered calls and the run ran as if drip were not there
    assert f"total {sum(range(1, 2001)) + 1} " in out.stdout
    # one start tried for 2,000 calls (not again for 10 s), and said in words, not a traceback
    assert out.stdout.rstrip().endswith("starts 1"), out.stdout
    assert "Traceback" not in out.stderr
    said = [line for line in out.stderr.splitlines() if line.startswith("WARNING")]
    assert len(said) == 1, out.stderr
    why = f"DRIP_BASE_URL=local could not start the local Drip server over {path}: "
    assert why in said[0] and "nothing is recorded" in said[0]
    assert f"core: {why}" in out.stdout and "DRIP_BASE_URL=local:/path/to/drip.db" in out.stdout
    if kind == "not a database":
        assert path.read_bytes() == b"my notes, not a database\n"


def test_an_unexpected_error_making_the_default_client_breaks_no_call() -> None:
    code = """
import logging
import drip, drip.client
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
def broken(*args, **kwargs):
    raise ZeroDivisionError("a bug of ours")
drip.client.Drip.__init__ = broken

@drip.metered(meter="calls", customer_id="cus_any")
def work(x):
    return x * 2

with drip.run(workflow="w", customer_id="cus_any"):
    print(sum(work(i) for i in range(100)))
"""
    env = {"PATH": "/usr/bin:/bin", "DRIP_API_KEY": "sk_test_x"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sum(i * 2 for i in range(100)))
    assert out.stderr.count("Traceback") == 1, out.stderr  # the bug's, once
    assert "ZeroDivisionError: a bug of ours" in out.stderr
    assert "drip is not configured, nothing is recorded: a bug of ours" in out.stderr


def test_the_default_client_leaves_no_socket_open_at_exit(tmp_path: Path) -> None:
    # its connections were never closed: python -X dev said "unclosed socket" at every exit
    code = (
        "import drip\n"
        "c = drip.drip.create_customer(external_customer_id='exit-user')\n"
        "drip.metered(meter='calls', customer_id=c.id)(lambda: None)()\n"
    )
    env = {"PATH": "/usr/bin:/bin", "DRIP_BASE_URL": f"local:{tmp_path / 'x.db'}"}
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", code],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "ResourceWarning" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
