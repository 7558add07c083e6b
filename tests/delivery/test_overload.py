"""A producer faster than the server, with the default settings: nothing dropped, memory
bounded (back-pressure), every record stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drip import Drip

RUNS, EVENTS = 2_000, 100  # 200,000 metered calls in runs of 100

BODY = f"""
import resource
client = Drip(os.environ["KEY"], os.environ["URL"])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for r in range({RUNS}):
    with client.run("overload", customer_id=CUSTOMER):
        for i in range({EVENTS}):
            work(i)
report = client.flush(300)
s = client.stats()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("done", s.recorded, s.sent, s.dropped, s.rejected, s.pending, s.blocked,
      report.failed, (peak - base) // 1024, flush=True)
"""


@pytest.mark.slow
def test_200k_records_from_a_tight_loop_all_stored_memory_bounded(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    proc = kit.spawn(kit.script(tmp_path, BODY), account, customer)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    fields = out.split()
    assert fields[0] == "done", out + err
    recorded, sent, dropped, rejected, pending, blocked, failed, grew_mb = map(int, fields[1:])
    total = RUNS * (EVENTS + 2)
    assert (recorded, sent, dropped, rejected, pending, failed) == (total, total, 0, 0, 0, 0)
    # the default buffer (100,000 records, ~23 MB) bounds memory: the caller waited instead
    assert blocked > 0
    assert grew_mb < 120, f"peak RSS grew {grew_mb} MB"
    assert kit.stored(client, customer, "delivery.calls") == (RUNS * EVENTS, 0)
    runs = client.list_runs(customer_id=customer, limit=1000).data
    assert {r.status.value for r in runs} == {"COMPLETED"}  # no run left RUNNING
