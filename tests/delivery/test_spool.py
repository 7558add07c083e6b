"""The disk spool against real processes: server down past the retry budget, the producer
SIGKILLed, the server back, a new process with the same spool: every record stored once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from drip import Drip

RUNS, EVENTS = 20, 100  # 20 runs of 100 events: 2,040 records

PRODUCER = f"""
client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"],
              max_retry_time=1.0, max_batch_items=500, flush_interval=0.2,
              handle_signals=False)
for r in range({RUNS}):
    with client.run("spooled", customer_id=CUSTOMER):
        for i in range({EVENTS}):
            work(i)
print("recorded", flush=True)
deadline = time.monotonic() + 60
while client.stats().spooled < {RUNS * (EVENTS + 2)} and time.monotonic() < deadline:
    time.sleep(0.05)
s = client.stats()
print("spooled", s.spooled, s.sent, s.undelivered, s.dropped, flush=True)
time.sleep(600)  # killed here
"""

REPLAYER = """
client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"])
report = client.flush(60)
s = client.stats()
print("replayed", s.replayed, s.sent, s.duplicates, report.sent, report.failed, report.pending,
      report.spooled, flush=True)
client.close()
"""

TOTAL = RUNS * (EVENTS + 2)


@pytest.mark.slow
def test_server_down_producer_killed_new_process_replays_everything_once(
    tmp_path: Path, account: Any, client: Drip, customer: str, proxy: Any, kit: Any
) -> None:
    spool = tmp_path / "spool"
    proxy.down()  # the server is unreachable for the producer's whole life
    producer = kit.spawn(
        kit.script(tmp_path, PRODUCER, "producer.py"), account, customer, proxy.url,
        SPOOL=str(spool),
    )  # fmt: skip
    kit.wait_line(producer, "recorded")
    line = kit.wait_line(producer, "spooled")
    # every record is on disk, none sent, none given up (the budget passed, the spool holds)
    assert line.split()[1:] == [str(TOTAL), "0", "0", "0"], line
    os.kill(producer.pid, signal.SIGKILL)
    producer.communicate(timeout=30)
    assert producer.returncode == -signal.SIGKILL
    assert kit.stored(client, customer, "delivery.calls") == (0, 0)
    batches = list(spool.rglob("*.batch"))
    assert batches and not list(spool.rglob("*.tmp"))

    proxy.up()
    replayer = kit.spawn(
        kit.script(tmp_path, REPLAYER, "replayer.py"), account, customer, proxy.url,
        SPOOL=str(spool),
    )  # fmt: skip
    out, err = replayer.communicate(timeout=120)
    assert replayer.returncode == 0, err
    fields = out.split()
    assert fields[0] == "replayed", out
    replayed, sent, duplicates, r_sent, r_failed, r_pending, r_spooled = map(int, fields[1:])
    assert replayed == TOTAL and sent + duplicates == TOTAL
    assert (r_sent, r_failed, r_pending, r_spooled) == (TOTAL, 0, 0, 0)
    assert kit.stored(client, customer, "delivery.calls") == (RUNS * EVENTS, 0)
    runs = client.list_runs(customer_id=customer).data
    assert len(runs) == RUNS and {r.status.value for r in runs} == {"COMPLETED"}
    assert not list(spool.rglob("*.batch"))  # acknowledged batches leave the spool

    # a third process finds nothing more to send: replay is idempotent and consumed
    again = kit.spawn(
        kit.script(tmp_path, REPLAYER, "again.py"), account, customer, proxy.url,
        SPOOL=str(spool),
    )  # fmt: skip
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out.split()[1] == "0"
    assert kit.stored(client, customer, "delivery.calls") == (RUNS * EVENTS, 0)


def test_without_a_spool_sigkill_loses_what_was_buffered(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """The other row of the table: no spool, SIGKILL, the buffer is gone (documented)."""
    body = """
    client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=60)
    with client.run("lost", customer_id=CUSTOMER):
        for i in range(50):
            work(i)
    print("recorded", client.stats().pending, flush=True)
    time.sleep(600)
    """
    proc = kit.spawn(kit.script(tmp_path, body), account, customer)
    assert kit.wait_line(proc, "recorded") == "recorded 52"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert kit.stored(client, customer, "delivery.calls") == (0, 0)


def test_a_corrupt_spool_file_is_skipped_and_reported(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    from drip._delivery.spool import Spool

    spool_dir = tmp_path / "spool"
    # a dead process's spool: one good batch, one truncated, one garbage, one unfinished
    dead = Spool(str(spool_dir), f"{account.base_url}/v1", account.secret_key, 1 << 30)
    good = (
        f'{{"items":[{{"type":"usage","id":"use_spooltest0001","customerId":"{customer}",'
        '"usageType":"delivery.calls","quantity":1}]}'
    ).encode()
    dead.write(good, 1)
    truncated = dead.write(good, 1)
    with open(truncated.path, "r+b") as f:
        f.truncate(truncated.size - 5)
    garbage = dead.write(good, 1)
    Path(garbage.path).write_bytes(b"not a spool file\n")
    Path(dead.dir, dead.owner + "-9999999999.tmp").write_bytes(b"half")
    dead._take_ownership()  # the "dead" owner's lock is released: its files are orphans
    os.close(dead._lock_fd)  # type: ignore[arg-type]

    body = """
    errors = []
    client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"],
                  on_error=errors.append)
    report = client.flush(30)
    s = client.stats()
    print("done", s.replayed, s.sent, s.undelivered, sorted({e.code for e in errors}),
          flush=True)
    client.close()
    """
    proc = kit.spawn(kit.script(tmp_path, body), account, customer, SPOOL=str(spool_dir))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("done"), out + err
    # the good batch and the truncated one were claimed; the truncated one fails its check
    assert out.split()[1:4] == ["2", "1", "1"], out
    assert "SPOOL_CORRUPT" in out
    assert kit.stored(client, customer, "delivery.calls") == (0, 1)
    assert len(list(spool_dir.rglob("*.corrupt"))) == 2
    assert not list(spool_dir.rglob("*.tmp")) and not list(spool_dir.rglob("*.batch"))
