"""The disk spool against real processes: server down past the retry budget, the producer
SIGKILLed, the server back, a new process with the same spool: every record stored once."""

from __future__ import annotations

import os
import signal
import time
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


def _replay(tmp_path: Path, kit: Any, account: Any, customer: str, proxy: Any, spool: Path,
            records: int, name: str = "replayer.py") -> None:  # fmt: skip
    """A new process with the same spool sends it all: ``records`` replayed, each once."""
    replayer = kit.spawn(
        kit.script(tmp_path, REPLAYER, name), account, customer, proxy.url, SPOOL=str(spool)
    )
    out, err = replayer.communicate(timeout=120)
    assert replayer.returncode == 0, err
    fields = out.split()
    assert fields[0] == "replayed", out
    replayed, sent, duplicates, r_sent, r_failed, r_pending, r_spooled = map(int, fields[1:])
    assert replayed == records and sent + duplicates == records
    assert (r_sent, r_failed, r_pending, r_spooled) == (records, 0, 0, 0)


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
    _replay(tmp_path, kit, account, customer, proxy, spool, TOTAL)
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


def test_overload_with_the_server_down_spills_to_the_spool_and_loses_nothing(
    tmp_path: Path, account: Any, client: Drip, customer: str, proxy: Any, kit: Any
) -> None:
    """A buffer of 1,000 records, 10,040 records made while the server is down for longer
    than the budget: the worker spills them to disk (the caller is not held for the outage),
    and all of them are stored once the server is back."""
    proxy.down()
    producer = Drip(
        account.secret_key, proxy.url, spool_dir=str(tmp_path / "spool"), max_buffer=1000,
        max_batch_items=500, max_retry_time=0.5, flush_interval=0.05,
    )  # fmt: skip
    started = time.monotonic()
    for _ in range(20):
        with producer.run("spilled", customer_id=customer):
            for _i in range(500):
                producer.metered("delivery.calls")(lambda: None)()
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 30
    while producer.stats().spooled < 10_040 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = producer.stats()
    assert (stats.spooled, stats.sent, stats.dropped, stats.undelivered) == (10_040, 0, 0, 0)
    assert elapsed < 20  # never held for the outage (it lasts until proxy.up() below)
    proxy.up()
    report = producer.flush(60)
    producer.close()
    assert (report.sent, report.failed, report.pending, report.spooled) == (10_040, 0, 0, 0)
    assert kit.stored(client, customer, "delivery.calls") == (10_000, 0)
    assert not list((tmp_path / "spool").rglob("*.batch"))


def test_a_child_that_calls_os_exit_leaves_its_spooled_records_for_the_next_process(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """``os._exit`` gives no hook; what the worker spooled (within a flush interval) survives."""
    body = """
    client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"],
                  flush_interval=0.1, handle_signals=False)
    # the server answers slowly for this process: hold the sender so nothing is acknowledged
    import drip._delivery.sender as sender
    real = sender._deliver
    sender._deliver = lambda *a, **k: (time.sleep(600), real(*a, **k))[1]
    with client.run("exited", customer_id=CUSTOMER):
        for i in range(300):
            work(i)
    time.sleep(1.0)  # several flush intervals: the worker has written the batches
    print("spooled", client.stats().spooled, flush=True)
    os._exit(0)
    """
    spool = str(tmp_path / "spool")
    proc = kit.spawn(kit.script(tmp_path, body), account, customer, SPOOL=spool)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "spooled 302", out + err
    assert kit.stored(client, customer, "delivery.calls") == (0, 0)
    replay = Drip(account.secret_key, account.base_url, spool_dir=spool)
    report = replay.flush(30)
    replay.close()
    assert report.sent == 302 and replay.stats().replayed == 302
    assert kit.stored(client, customer, "delivery.calls") == (300, 0)


ANSWERED_FIRST = """
client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"],
              max_retry_time=1.0, flush_interval=0.2, handle_signals=False)
with client.run("spooled", customer_id=CUSTOMER):
    for i in range(100):
        work(i)
print("answered", client.flush(30).sent, flush=True)  # the answer said: events items welcome
while not os.path.exists(os.environ["GO"]):
    time.sleep(0.05)
for r in range(10):
    with client.run("spooled", customer_id=CUSTOMER):
        for i in range(300):
            work(i)
deadline = time.monotonic() + 60
while client.stats().spooled < 10 * 302 and time.monotonic() < deadline:
    time.sleep(0.05)
print("spooled", client.stats().spooled, flush=True)
time.sleep(600)  # killed here
"""


@pytest.mark.slow
def test_spooled_events_items_are_replayed_once_after_a_kill(
    tmp_path: Path, account: Any, client: Drip, customer: str, proxy: Any, kit: Any
) -> None:
    """Once the server has said it takes ``events`` items, the spool holds them: a new process
    replays them and every event is stored once."""
    spool, go = tmp_path / "spool", tmp_path / "go"
    producer = kit.spawn(
        kit.script(tmp_path, ANSWERED_FIRST, "producer.py"), account, customer, proxy.url,
        SPOOL=str(spool), GO=str(go),
    )  # fmt: skip
    assert kit.wait_line(producer, "answered").split()[1] == "102"
    proxy.down()
    go.touch()
    assert kit.wait_line(producer, "spooled").split()[1] == str(10 * 302)
    bodies = [p.read_bytes() for p in spool.rglob("*.batch")]
    assert any(b'"type":"events"' in b for b in bodies)
    os.kill(producer.pid, signal.SIGKILL)
    producer.communicate(timeout=30)
    proxy.up()
    _replay(tmp_path, kit, account, customer, proxy, spool, 10 * 302)
    assert kit.stored(client, customer, "delivery.calls") == (100 + 10 * 300, 0)


def test_a_full_disk_keeps_the_records_in_memory_and_leaves_no_partial_file(
    tmp_path: Path, account: Any, client: Drip, customer: str, proxy: Any, kit: Any
) -> None:
    """The spool's disk fills up while the server is down (a real limit: ``RLIMIT_FSIZE``, so
    writes past 64 KiB fail as on a full disk): the spool is given up with one error, the
    records wait in memory (the caller waits for room), all of them are stored once the
    server is back, and no half-written file is left to hold the space or to be reported
    lost by the next process."""
    body = """
    import resource
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"],
                  max_buffer=2000, max_batch_items=1000, max_retry_time=3600,
                  flush_interval=0.05, handle_signals=False)
    def unblock():
        print("blocked", flush=True)
        while not os.path.exists(os.environ["GO"]):
            time.sleep(0.05)
    import threading
    threading.Timer(3.0, unblock).start()  # the buffer is full by then: the caller waits
    with client.run("full-disk", customer_id=CUSTOMER):
        for i in range(6000):
            work(i)
    report = client.flush(60)
    s = client.stats()
    print("done", s.sent, report.failed, report.pending, s.spooled, s.dropped, flush=True)
    client.close()
    """
    spool = tmp_path / "spool"
    go = tmp_path / "go"
    proxy.down()
    proc = kit.spawn(
        kit.script(tmp_path, body), account, customer, proxy.url, SPOOL=str(spool), GO=str(go)
    )
    kit.wait_line(proc, "blocked")
    proxy.up()
    go.touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "writing to the spool failed" in err  # said once, with the reason
    assert err.count("writing to the spool failed") == 1, err
    assert out.split()[-6:] == ["done", "6002", "0", "0", "0", "0"], out + err
    assert kit.stored(client, customer, "delivery.calls") == (6000, 0)
    assert not [p.name for p in spool.rglob("*") if p.suffix in (".tmp", ".batch", ".lock")]


LOCAL = """
import os, sys, time, httpx
from drip import Drip
db, spool, mode = sys.argv[1:4]
options = {"transport": httpx.MockTransport(lambda r: httpx.Response(503))} if mode == "down" else {}
client = Drip(base_url=f"local:{db}", spool_dir=spool, max_retry_time=0.5, flush_interval=0.1,
              handle_signals=False, **options)
call = client.metered(meter="local.calls")(lambda: None)
if mode == "down":  # the embedded server's answers never reach delivery: all of it spools
    with client.run("local", external_customer_id="local-spool"):
        for i in range(300):
            call()
    while client.stats().spooled < 302:
        time.sleep(0.05)
    os._exit(0)  # no atexit, no hook: what a SIGKILL leaves
report = client.flush(60)
print(client.stats().replayed, report.sent,
      client.get_usage_summary(customer_id="local-spool").total("local.calls"), flush=True)
"""


def test_the_embedded_servers_spool_is_replayed_by_the_next_process(tmp_path: Path) -> None:
    """``DRIP_BASE_URL=local`` with a spool: the spool was named after the embedded server's
    URL and key, a new port and a new key in each process, so what a killed process left on
    disk was never replayed (55,002 records left for good in one try)."""
    import subprocess
    import sys

    script = tmp_path / "local.py"
    script.write_text(LOCAL)
    db, spool = str(tmp_path / "local.db"), str(tmp_path / "spool")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    run = [sys.executable, str(script), db, spool]
    subprocess.run([*run, "down"], env=env, check=True, timeout=120)
    assert list(Path(spool).rglob("*.batch"))
    out = subprocess.run([*run, "up"], env=env, check=True, timeout=120, capture_output=True)
    assert out.stdout.split() == [b"302", b"302", b"300.0"], out.stderr[-2000:]
    assert not list(Path(spool).rglob("*.batch"))


def test_a_fork_child_whose_spool_is_gone_still_stores_its_events_in_the_open_run(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """The child takes its own spool files at the fork; when it could not (the directory was
    removed), the at-fork hook raised before the parent's unsent run start was put back in
    the child's buffer: the child's events were all rejected RUN_NOT_FOUND."""
    body = """
    import shutil
    spool = os.environ["SPOOL"]
    client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=spool, flush_interval=60)
    with client.run("forked", customer_id=CUSTOMER):
        for i in range(10):
            work(i)
        shutil.rmtree(spool)
        open(spool, "w").close()  # a file where the directory was
        pid = os.fork()
        for i in range(10):
            work(i)
        if pid == 0:
            os._exit(0 if client.flush(30).failed == 0 else 3)
    print("child", os.waitpid(pid, 0)[1], client.flush(30).failed, flush=True)
    """
    proc = kit.spawn(kit.script(tmp_path, body), account, customer, SPOOL=str(tmp_path / "sp"))
    out, err = proc.communicate(timeout=120)
    assert out.split() == ["child", "0", "0"], err[-3000:]
    assert kit.stored(client, customer, "delivery.calls") == (30, 0)
