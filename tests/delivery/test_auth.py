"""A refused API key (401, 403: revoked, wrong, rotated) is a verdict on the key, not on the
records: with a spool they stay on disk and are retried until the key is accepted (or sent
with a new key by ``drip spool replay``); without one they are retried within the budget, then
reported undelivered naming the key. Before, each such batch was counted ``refused`` and gone,
and its spool file deleted.

The first tests use a fake sender (exact and fast); the others the real server behind an HTTP
proxy that, while ``refusing``, replaces the request's key by one the server does not know, so
the 401 is the server's own. Counts are read from the server.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from drip import Drip
from drip import instrument as dm
from drip._config import resolve_settings
from drip.errors import DripAPIError, DripAuthenticationError, DripDeliveryError
from drip.instrument import Instrumentation
from drip.models import IngestResult


class FakeIngest:
    """``created`` for each item, after ``refusals`` answers of ``error`` (None: forever)."""

    def __init__(self) -> None:
        self.refusals: int | None = 0
        self.error: DripAPIError = DripAuthenticationError("Invalid API key", status_code=401)
        self.calls = 0
        self.ids: list[str] = []

    def __call__(self, body: bytes) -> IngestResult:
        self.calls += 1
        if self.refusals is None or self.refusals > 0:
            if self.refusals is not None:
                self.refusals -= 1
            raise self.error
        items = json.loads(body)["items"]
        self.ids += [f"{i['type']} {i.get('id') or i.get('runId')}" for i in items]
        return IngestResult.model_validate(
            {
                "results": [
                    {"index": n, "id": self.ids[-len(items) + n].split()[1], "status": "created"}
                    for n in range(len(items))
                ],
                "created": len(items), "duplicates": 0, "updated": 0, "rejected": 0,
            }
        )  # fmt: skip


@pytest.fixture
def fake() -> FakeIngest:
    return FakeIngest()


@pytest.fixture
def make(fake: FakeIngest) -> Iterator[Callable[..., Instrumentation]]:
    made: list[Instrumentation] = []

    def factory(**options: Any) -> Instrumentation:
        options.setdefault("flush_interval", 0.05)
        settings = resolve_settings(
            api_key="sk_test_0000000", base_url="http://127.0.0.1:9", env={}, **options
        )
        errors: list[BaseException] = []
        instr = Instrumentation(settings, on_error=errors.append, sender=fake)
        instr.errors = errors
        made.append(instr)
        return instr

    yield factory
    for instr in made:
        instr.shutdown(1)


@dm.metered("m")
def work(i: int) -> int:
    return i


def record(instr: Instrumentation, n: int) -> None:
    with instr.run("wf", customer_id="cus_1"):
        for i in range(n):
            work(i)


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def codes(instr: Any) -> list[str]:
    return [e.code for e in instr.errors if isinstance(e, DripDeliveryError)]


@pytest.mark.parametrize("status", [401, 403])
def test_with_a_spool_a_refused_key_keeps_the_records_and_retries_until_it_is_accepted(
    make: Any, fake: FakeIngest, tmp_path: Path, status: int
) -> None:
    fake.error = DripAPIError("key revoked", status_code=status)
    fake.refusals = 3
    instr = make(spool_dir=str(tmp_path), max_retry_time=0.1)
    record(instr, 3)
    # while the key is refused, a flush returns as soon as the records are on disk
    assert instr.flush(20).spooled == 5
    wait_for(lambda: instr.stats().sent == 5, 20)
    report = instr.flush(20)
    assert (report.sent, report.failed, report.pending, report.spooled) == (0, 0, 0, 0)
    stats = instr.stats()
    assert (stats.sent, stats.refused, stats.undelivered) == (5, 0, 0)
    assert len(set(fake.ids)) == len(fake.ids) == 5 and fake.calls == 4
    assert codes(instr) == ["UNAUTHORIZED"]  # once, not per attempt
    assert not list(tmp_path.rglob("*.batch"))


def test_with_a_spool_a_key_refused_for_good_is_held_on_disk_not_failed(
    make: Any, fake: FakeIngest, tmp_path: Path
) -> None:
    fake.refusals = None
    instr = make(spool_dir=str(tmp_path), max_retry_time=0.1)
    record(instr, 3)
    report = instr.flush(1.5)
    assert (report.sent, report.failed, report.pending, report.spooled) == (0, 0, 0, 5)
    stats = instr.stats()
    assert (stats.spooled, stats.refused, stats.undelivered, stats.rejected) == (5, 0, 0, 0)
    [error] = [e for e in instr.errors if isinstance(e, DripDeliveryError)]
    assert error.code == "UNAUTHORIZED" and error.count == 5
    spool = next(p for p in tmp_path.iterdir() if p.is_dir())
    text = str(error)
    assert "refused the API key" in text and "Invalid API key" in text
    assert str(spool) in text and "drip spool replay" in text
    calls = fake.calls
    start = time.monotonic()
    report = instr.shutdown(1)
    assert time.monotonic() - start < 4  # the long backoff does not hold the shutdown
    assert (report.failed, report.spooled) == (0, 5)
    assert calls <= fake.calls <= calls + 1
    assert len(list(spool.glob("*.batch"))) == 1  # on disk for a later process
    assert instr.stats().refused == 0


def test_the_refused_key_backs_off_far_beyond_the_outage_cap(
    make: Any, fake: FakeIngest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a spool, the waits double up to a minute (not the 8 s of an outage)."""
    from drip._delivery import sender

    delays: list[float] = []
    real = sender.backoff_delay

    def spy(attempt: int, *args: Any, **kw: Any) -> float:
        delays.append(real(attempt, *args, **kw))
        return 0.001

    monkeypatch.setattr(sender, "backoff_delay", spy)
    fake.refusals = 14
    instr = make(spool_dir=str(tmp_path), max_retry_time=0.1)
    record(instr, 1)
    wait_for(lambda: instr.stats().sent == 3, 20)
    assert len(delays) == 14 and 30 <= max(delays) <= 60 and delays[-1] > 8


def test_without_a_spool_a_refused_key_is_retried_within_the_budget(
    make: Any, fake: FakeIngest
) -> None:
    """The key may be fixed on the server in the meantime: as in an outage, nothing is lost."""
    fake.refusals = 2
    instr = make(max_retry_time=30)
    record(instr, 3)
    report = instr.flush(20)
    assert (report.sent, report.failed, report.pending) == (5, 0, 0)
    assert instr.stats().refused == 0 and codes(instr) == ["UNAUTHORIZED"]
    assert "then these records are lost" in str(instr.errors[0])


def test_without_a_spool_a_key_refused_past_the_budget_is_reported_as_the_keys_fault(
    make: Any, fake: FakeIngest
) -> None:
    fake.refusals = None
    instr = make(max_retry_time=0.3)
    record(instr, 3)
    report = instr.flush(20)
    assert (report.sent, report.failed, report.pending) == (0, 5, 0)
    stats = instr.stats()
    assert (stats.refused, stats.undelivered) == (0, 5)
    assert codes(instr) == ["UNAUTHORIZED", "UNDELIVERED"]
    lost = instr.errors[1]
    assert isinstance(lost, DripDeliveryError) and lost.count == 5
    assert "the server refused the API key for longer than the retry budget" in str(lost)
    assert "there is no spool" in str(lost)


# -- the real server ----------------------------------------------------------------------------

#: a key the server does not know: what a revoked or mistyped key gets
UNKNOWN_KEY = "sk_local_" + "0" * 48


class AuthProxy:
    """An HTTP proxy in front of the server. While ``refusing``, each request goes on with
    ``UNKNOWN_KEY`` instead of its own, so the server itself answers 401."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.refusing = False
        self.refused = 0
        self.lock = threading.Lock()
        self._http = httpx.Client(base_url=target, timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in {"host", "content-length", "connection"}
                }
                if proxy.refusing:
                    headers["Authorization"] = f"Bearer {UNKNOWN_KEY}"
                answer = proxy._http.request(self.command, self.path, content=body, headers=headers)
                if answer.status_code == 401:
                    with proxy.lock:
                        proxy.refused += 1
                content = answer.content
                self.send_response(answer.status_code)
                for name in ("content-type", "www-authenticate", "retry-after"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


@pytest.fixture
def auth_proxy(live_server: Any) -> Iterator[AuthProxy]:
    proxy = AuthProxy(live_server.url)
    yield proxy
    proxy.close()


@dm.metered("delivery.calls")
def call(i: int) -> int:
    return i


RUNS, EVENTS = 10, 100
TOTAL = RUNS * (EVENTS + 2)


@pytest.mark.slow
def test_a_server_refusing_the_key_for_a_while_then_accepting_stores_everything_once(
    tmp_path: Path, account: Any, client: Drip, customer: str, auth_proxy: AuthProxy, kit: Any
) -> None:
    errors: list[BaseException] = []
    auth_proxy.refusing = True
    with Drip(
        account.secret_key, auth_proxy.url, spool_dir=str(tmp_path / "spool"),
        max_retry_time=0.5, max_batch_items=200, flush_interval=0.1, on_error=errors.append,
    ) as producer:  # fmt: skip
        for _ in range(RUNS):
            with producer.run("refused", customer_id=customer):
                for i in range(EVENTS):
                    call(i)
        wait_for(lambda: producer.stats().spooled == TOTAL)
        time.sleep(1.5)  # a few refusals, past the retry budget
        stats = producer.stats()
        assert (stats.sent, stats.refused, stats.undelivered) == (0, 0, 0)
        assert auth_proxy.refused >= 2
        assert kit.stored(client, customer, "delivery.calls") == (0, 0)
        report = producer.flush(30)  # everything is on disk: it returns at once
        assert (report.sent, report.failed, report.pending, report.spooled) == (0, 0, 0, TOTAL)
        auth_proxy.refusing = False  # the key is accepted again (fixed on the server)
        wait_for(lambda: producer.stats().spooled == 0, 120)  # at the next try
        report = producer.flush(120)
        assert (report.failed, report.pending, report.spooled) == (0, 0, 0)
        stats = producer.stats()
        assert (stats.sent + stats.duplicates, stats.refused, stats.undelivered) == (TOTAL, 0, 0)
    assert kit.stored(client, customer, "delivery.calls") == (RUNS * EVENTS, 0)
    assert [e.code for e in errors if isinstance(e, DripDeliveryError)] == ["UNAUTHORIZED"]
    assert "this server does not know it" in str(errors[0])
    assert not list((tmp_path / "spool").rglob("*.batch"))


PRODUCER = f"""
client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"],
              max_retry_time=0.5, max_batch_items=200, flush_interval=0.1,
              handle_signals=False)
for r in range({RUNS}):
    with client.run("refused", customer_id=CUSTOMER):
        for i in range({EVENTS}):
            work(i)
deadline = time.monotonic() + 60
while client.stats().spooled < {TOTAL} and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1.0)
s = client.stats()
print("spooled", s.spooled, s.sent, s.refused, s.undelivered, flush=True)
if os.environ.get("EXIT"):
    start = time.monotonic()
    report = client.shutdown(2)
    print("shutdown", report.spooled, report.failed, round(time.monotonic() - start), flush=True)
    sys.exit(0)
time.sleep(600)  # killed here
"""

REPLAYER = """
client = Drip(os.environ["KEY"], os.environ["URL"], spool_dir=os.environ["SPOOL"])
report = client.flush(60)
s = client.stats()
print("replayed", s.replayed, s.sent + s.duplicates, report.failed, report.spooled, flush=True)
client.close()
"""


@pytest.mark.slow
def test_a_process_killed_while_its_key_is_refused_is_replayed_by_the_next(
    tmp_path: Path, account: Any, client: Drip, customer: str, auth_proxy: AuthProxy, kit: Any
) -> None:
    spool = tmp_path / "spool"
    auth_proxy.refusing = True
    producer = kit.spawn(
        kit.script(tmp_path, PRODUCER, "producer.py"), account, customer, auth_proxy.url,
        SPOOL=str(spool),
    )  # fmt: skip
    line = kit.wait_line(producer, "spooled")
    assert line.split()[1:] == [str(TOTAL), "0", "0", "0"], line
    os.kill(producer.pid, signal.SIGKILL)
    _, err = producer.communicate(timeout=30)
    assert err.count("refused the API key") == 1, err  # reported once, loudly
    assert kit.stored(client, customer, "delivery.calls") == (0, 0)
    assert list(spool.rglob("*.batch"))
    auth_proxy.refusing = False  # the same key, accepted again
    replayer = kit.spawn(
        kit.script(tmp_path, REPLAYER, "replayer.py"), account, customer, auth_proxy.url,
        SPOOL=str(spool),
    )  # fmt: skip
    out, err = replayer.communicate(timeout=120)
    assert replayer.returncode == 0, err
    assert out.split() == ["replayed", str(TOTAL), str(TOTAL), "0", "0"], (out, err)
    assert kit.stored(client, customer, "delivery.calls") == (RUNS * EVENTS, 0)
    assert not list(spool.rglob("*.batch"))


def test_without_a_spool_the_report_names_the_api_key(
    account: Any, client: Drip, customer: str, auth_proxy: AuthProxy, kit: Any
) -> None:
    errors: list[BaseException] = []
    auth_proxy.refusing = True
    with Drip(
        account.secret_key, auth_proxy.url, max_retry_time=0.5, on_error=errors.append
    ) as producer:
        with producer.run("refused", customer_id=customer):
            for i in range(10):
                call(i)
        report = producer.flush(30)
        assert (report.sent, report.failed, report.pending) == (0, 12, 0)
        stats = producer.stats()
        assert (stats.refused, stats.undelivered) == (0, 12)
    found = [e for e in errors if isinstance(e, DripDeliveryError)]
    assert [e.code for e in found] == ["UNAUTHORIZED", "UNDELIVERED"]
    assert "refused the API key" in str(found[0]) and "DRIP_API_KEY" in str(found[0])
    assert "the server refused the API key for longer than the retry budget" in str(found[1])
    assert "this server does not know it" in str(found[1])
    assert auth_proxy.refused >= 2
    assert kit.stored(client, customer, "delivery.calls") == (0, 0)


@pytest.mark.slow
def test_drip_spool_replay_sends_an_old_keys_records_with_the_new_key_once(
    tmp_path: Path,
    account: Any,
    live_server: Any,
    client: Drip,
    customer: str,
    auth_proxy: AuthProxy,
    kit: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The key is rotated: the process using the old one exits with its records on disk (the
    directory of the old key); `drip spool replay` sends them with the new key, each once."""
    from drip.cli import main

    spool = tmp_path / "spool"
    auth_proxy.refusing = True
    producer = kit.spawn(
        kit.script(tmp_path, PRODUCER, "producer.py"), account, customer, auth_proxy.url,
        SPOOL=str(spool), EXIT="1",
    )  # fmt: skip
    out, err = producer.communicate(timeout=120)
    assert producer.returncode == 0, err
    spooled, shutdown = out.splitlines()
    assert spooled.split()[1:] == [str(TOTAL), "0", "0", "0"], out
    _, kept, failed, seconds = shutdown.split()
    assert (int(kept), int(failed)) == (TOTAL, 0) and int(seconds) <= 4, out
    assert "drip spool replay" in err and account.secret_key not in err
    [folder] = [p for p in spool.iterdir() if p.is_dir()]

    assert main(["spool", "list", "--spool-dir", str(spool)]) == 0
    listed = capsys.readouterr().out
    row = next(line for line in listed.splitlines() if line.startswith(folder.name))
    assert auth_proxy.url in row and account.secret_key[:12] in row
    assert f"{TOTAL:,}" in row.split() and account.secret_key not in listed

    # another account's key: every record is rejected, so nothing is stored and nothing removed
    other = live_server.create_key(f"other-{account.name}")
    argv = ["spool", "replay", folder.name, "--spool-dir", str(spool)]
    assert main([*argv, "--api-key", other, "--base-url", account.base_url]) == 1
    assert "of the account these records belong to" in capsys.readouterr().err
    assert kit.stored(client, customer, "delivery.calls") == (0, 0)
    assert len(list(folder.glob("*.batch"))) == len(list(folder.glob("*.batch"))) > 0

    new_key = live_server.create_key(account.name)  # the rotated key of the same account
    assert main([*argv, "--api-key", new_key, "--base-url", account.base_url]) == 0
    said = capsys.readouterr().out
    assert f"{TOTAL:,} stored, 0 already there, 0 rejected" in " ".join(said.split()), said
    assert kit.stored(client, customer, "delivery.calls") == (RUNS * EVENTS, 0)
    assert not list(folder.glob("*.batch"))
    # the same key again: nothing left to send
    assert main([*argv, "--api-key", new_key, "--base-url", account.base_url]) == 0
    assert "replayed 0 records" in capsys.readouterr().out
    assert kit.stored(client, customer, "delivery.calls") == (RUNS * EVENTS, 0)


def test_a_full_spool_behind_a_refused_key_keeps_memory_bounded_and_the_caller_going(
    make: Any, fake: FakeIngest, tmp_path: Path
) -> None:
    """The spool filled while the key was refused: the worker kept encoding batches into
    memory without bound (100,000 records pending with max_buffer=1,000). Now at most two
    batches wait in memory; past the retry budget the oldest of them is reported undelivered
    (as without a spool), so the caller is never held for as long as the key is refused."""
    fake.refusals = None
    instr = make(
        spool_dir=str(tmp_path), spool_max_bytes=100_000, max_buffer=1_000,
        max_batch_items=100, max_retry_time=0.5,
    )  # fmt: skip
    done = threading.Event()
    most = [0]

    def produce() -> None:
        for _ in range(50):
            record(instr, 200)
            most[0] = max(most[0], instr.stats().pending)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(60), "the caller was held"
    assert most[0] <= 1_000 + 2 * 100 + 100
    report = instr.flush(5)
    stats = instr.stats()
    assert stats.spooled > 0 and stats.refused == 0
    assert stats.spooled + stats.undelivered + stats.pending == 50 * 202
    assert report.spooled == stats.spooled
    lost = [e for e in instr.errors if getattr(e, "code", None) == "UNDELIVERED"]
    assert lost and "the spool is full" in str(lost[0]) and "API key" in str(lost[0])


def test_while_the_key_is_refused_flush_and_shutdown_return_once_everything_is_on_disk(
    make: Any, fake: FakeIngest, tmp_path: Path
) -> None:
    """A flush at the end of each request (serverless) waited its whole timeout while the key
    was refused, although nothing more could happen to the records: they were on disk."""
    fake.refusals = None
    instr = make(spool_dir=str(tmp_path), max_retry_time=0.1)
    for n in range(1, 4):
        record(instr, 3)
        start = time.monotonic()
        report = instr.flush(30)
        assert time.monotonic() - start < 3
        assert (report.sent, report.failed, report.pending, report.spooled) == (0, 0, 0, 5 * n)
    record(instr, 3)
    start = time.monotonic()
    report = instr.shutdown(30)
    assert time.monotonic() - start < 3
    assert (report.failed, report.pending, report.spooled) == (0, 0, 20)
    assert sum(int(p.read_bytes().split()[1]) for p in tmp_path.rglob("*.batch")) == 20
    assert codes(instr) == ["UNAUTHORIZED"]


def test_a_process_with_a_new_key_says_where_the_old_keys_records_wait(
    make: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It does not send them (they may be another account's), but it no longer keeps quiet
    about them: the directory and the command that sends them are in its log."""
    from drip._delivery.spool import Spool

    old = Spool(str(tmp_path), "http://127.0.0.1:9/v1", "sk_test_1111111", 1 << 20)
    old.write(b'{"items":[]}', 3)
    old.release()
    Spool(str(tmp_path), "http://127.0.0.1:8/v1", "sk_test_2222222", 1 << 20).release()
    with caplog.at_level("WARNING", logger="drip"):
        make(spool_dir=str(tmp_path))  # sk_test_0000000, http://127.0.0.1:9/v1
    [line] = [r.getMessage() for r in caplog.records if "another API key" in r.getMessage()]
    assert f"drip spool replay {old.dir} --api-key" in line
    assert "sk_test_1111…" in line and "sk_test_1111111" not in line
    assert len(list(Path(old.dir).glob("*.batch"))) == 1  # not taken


def test_flushes_while_the_key_is_refused_do_not_hold_the_worker_behind_a_full_spool(
    make: Any, fake: FakeIngest, tmp_path: Path
) -> None:
    """Each flush there returns at once and leaves a marker behind the stuck batch; counted as
    batches in memory, two of them stopped the worker, and the caller then waited for as long
    as the key was refused."""
    fake.refusals = None
    instr = make(
        spool_dir=str(tmp_path), spool_max_bytes=30_000, max_buffer=500,
        max_batch_items=100, max_retry_time=0.3,
    )  # fmt: skip
    record(instr, 100)
    wait_for(lambda: instr.stats().spooled > 0, 20)
    for _ in range(5):
        instr.flush(0.2)
    done = threading.Event()

    def produce() -> None:
        for _ in range(20):
            record(instr, 100)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(30), "the caller was held"
