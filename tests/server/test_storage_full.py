"""The server's disk fills up: a real ``drip serve`` on a 2 MiB tmpfs (mounted in a mount
namespace of its own, ``unshare --mount``). Writes fail with a clear 507 (never a 2xx for what
was not stored), the SDK keeps retrying them, reads go on, and what was stored is counted once.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from drip import Drip, DripAPIError


def _serve_on_a_full_disk(tmp_path: Path) -> tuple[subprocess.Popen[str], str, str]:
    disk = tmp_path / "disk"
    disk.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = f"{sys.executable} -m drip.cli serve --db {disk}/drip.db --port {port}"
    script = f"mount -t tmpfs -o size=2m tmpfs {disk} && exec {serve} --log-level warning"
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount -t tmpfs tmpfs {disk}"], capture_output=True
    )
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs in a mount namespace here: {probe.stderr!r}")
    server = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    key = ""
    for line in server.stdout:
        found = re.search(r"secret key: (\S+)", line)
        if found:
            key = found.group(1)
            break
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/health")
            return server, url, key
        except httpx.TransportError:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr
            time.sleep(0.1)


def test_a_full_disk_is_a_clear_507_and_what_was_stored_counts_once(tmp_path: Path) -> None:
    server, url, key = _serve_on_a_full_disk(tmp_path)
    try:
        with Drip(key, url, max_retries=0) as client:
            customer = client.create_customer(external_customer_id="full").id
            accepted = 0
            with pytest.raises(DripAPIError) as info:  # fill it, one call at a time
                for _ in range(100_000):
                    client.track_usage(
                        customer_id=customer, meter="disk.fill", quantity=1,
                        metadata={"pad": "x" * 200},
                    )  # fmt: skip
                    accepted += 1
            assert info.value.status_code == 507 and info.value.code == "STORAGE_FULL"
            assert "storage is full" in str(info.value)
            assert accepted > 0
            # reads go on, and hold exactly what was answered 2xx
            [meter] = client.get_usage_summary(customer_id=customer).meters
            assert (meter.meter, meter.usage_records) == ("disk.fill", accepted)
        # the delivery retries a 507 like any 5xx, then (no spool here) says what it lost
        errors: list[BaseException] = []
        with Drip(key, url, max_retry_time=1, on_error=errors.append) as client:
            with client.run("full", customer_id=customer):
                for _ in range(500):
                    client.metered("disk.events")(int)()
            report = client.flush(30)
            stats = client.stats()
        assert (report.sent, report.failed) == (0, 502) and stats.retries >= 1
        assert any("storage is full" in str(e) for e in errors), errors
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "the database's disk is full" in err, err
    assert "Traceback" not in err, err  # a known failure, said in one line


def test_a_full_disk_is_recognised_from_each_driver_and_the_os() -> None:
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from drip.server.errors import storage_full

    sqlite_full = sqlite3.OperationalError("database or disk is full")
    assert storage_full(sqlite_full)
    assert storage_full(OperationalError("INSERT", {}, sqlite_full))  # SQLAlchemy's wrapper
    assert storage_full(OSError(errno.ENOSPC, "No space left on device"))
    psycopg = pytest.importorskip("psycopg")
    disk_full = psycopg.errors.DiskFull("could not extend file: No space left on device")
    assert storage_full(OperationalError("INSERT", {}, disk_full))
    try:  # another error raised while handling it: found through the context
        try:
            raise sqlite_full
        except sqlite3.Error:
            raise RuntimeError("storing failed")  # noqa: B904
    except RuntimeError as exc:
        assert storage_full(exc)
    assert not storage_full(sqlite3.OperationalError("database is locked"))
    assert not storage_full(OSError(errno.EACCES, "Permission denied"))
    assert not storage_full(psycopg.errors.UniqueViolation("duplicate key"))
