"""DRIP_BASE_URL=local: the local server inside the process, same wire, no key needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
