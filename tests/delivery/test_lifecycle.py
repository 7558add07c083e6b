"""Stops and forks with real processes and signals; counts read from the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drip import Drip

N = 3_000  # records per case: enough that a lost buffer cannot hide

SIGTERM_BODY = f"""
client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=60)
{{setup}}
with client.run("stopped", customer_id=CUSTOMER):
    for i in range({N}):
        work(i)
print("recorded", client.stats().pending, flush=True)
time.sleep(600)  # SIGTERM arrives here
"""


def _run_until_sigterm(tmp_path: Path, kit: Any, account: Any, customer: str, setup: str) -> Any:
    path = kit.script(tmp_path, SIGTERM_BODY.replace("{setup}", setup))
    proc = kit.spawn(path, account, customer)
    # nothing was sent yet: every record is in the buffer when the signal comes
    assert kit.wait_line(proc, "recorded") == f"recorded {N + 2}"
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_sigterm_with_the_default_handler_flushes_then_dies_by_sigterm(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    status, _, err = _run_until_sigterm(tmp_path, kit, account, customer, "")
    assert status == -signal.SIGTERM, err  # the exit status SIGTERM gives
    assert kit.stored(client, customer, "delivery.calls") == (N, 0)
    [run] = client.list_runs(customer_id=customer).data
    assert run.status.value == "COMPLETED"


def test_sigterm_chains_the_applications_handler(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    setup = """
def on_term(signum, frame):
    print("app handler", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, on_term)
"""
    status, out, err = _run_until_sigterm(tmp_path, kit, account, customer, setup)
    assert status == 7 and "app handler" in out, err  # the application's handler decided
    assert kit.stored(client, customer, "delivery.calls") == (N, 0)


def test_sigterm_is_hooked_when_the_first_record_comes_from_another_thread(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    # a web server's thread pool records first: no signal handler can be set there, so the
    # hook goes in when the client is made (on the main thread), not when delivery starts
    body = SIGTERM_BODY.replace(
        f"""with client.run("stopped", customer_id=CUSTOMER):
    for i in range({N}):
        work(i)""",
        f"""import threading
def pool():
    with client.run("stopped", customer_id=CUSTOMER):
        for i in range({N}):
            work(i)
worker = threading.Thread(target=pool)
worker.start()
worker.join()""",
    )
    path = kit.script(tmp_path, body.replace("{setup}", ""))
    proc = kit.spawn(path, account, customer)
    assert kit.wait_line(proc, "recorded") == f"recorded {N + 2}"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err
    assert kit.stored(client, customer, "delivery.calls") == (N, 0)


def test_sigterm_opt_out_leaves_the_default_behaviour(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    body = SIGTERM_BODY.replace("flush_interval=60", "flush_interval=60, handle_signals=False")
    path = kit.script(tmp_path, body.replace("{setup}", ""))
    proc = kit.spawn(path, account, customer)
    kit.wait_line(proc, "recorded")
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    # opted out: Python's default SIGTERM, no flush (what the table says without the hook)
    assert kit.stored(client, customer, "delivery.calls") == (0, 0)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
@pytest.mark.parametrize("chained", [False, True])
def test_sighup_flushes_like_sigterm(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any, chained: bool
) -> None:
    """SIGHUP (a closed terminal, a dropped SSH session) ends a process by default without
    ``atexit``, as SIGTERM does: it lost the whole buffer (4,800 of 63,300 records in a loop
    hung up after 3 s). The default action is reset first (under ``nohup`` it is ignored)."""
    setup = """
def on_hup(signum, frame):
    print("app handler", flush=True)
    sys.exit(7)
"""
    body = "signal.signal(signal.SIGHUP, on_hup if CHAINED else signal.SIG_DFL)\n" + SIGTERM_BODY
    path = kit.script(tmp_path, setup + f"CHAINED = {chained}\n" + body.replace("{setup}", ""))
    proc = kit.spawn(path, account, customer)
    assert kit.wait_line(proc, "recorded") == f"recorded {N + 2}"
    os.kill(proc.pid, signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    if chained:  # flushed, then the application's handler decided
        assert proc.returncode == 7 and "app handler" in out, err
    else:  # flushed, then the exit status SIGHUP gives
        assert proc.returncode == -signal.SIGHUP, err
    assert kit.stored(client, customer, "delivery.calls") == (N, 0)


def test_fork_inside_an_open_run_stores_every_child_event_in_that_run(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    body = """
    client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=30)
    with client.run("forked", customer_id=CUSTOMER) as run:
        for i in range(100):
            work(i)
        # the run's start is still in the parent's buffer: nothing was sent yet
        assert client.stats().sent == 0
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                for i in range(2000):
                    work(i)
                report = client.flush(60)
                os._exit(0 if report.ok and report.failed == 0 else 3)
            pids.append(pid)
        codes = [os.waitpid(pid, 0)[1] for pid in pids]
        for i in range(100):
            work(i)
    print("run", run.id, codes, client.flush(60).ok, flush=True)
    """
    proc = kit.spawn(kit.script(tmp_path, body), account, customer)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    _, run_id, *rest = out.split(" ", 2)
    assert rest == ["[0, 0, 0, 0] True\n"], out + err
    details = client.get_run(run_id)
    assert details.totals.event_count == 200 + 4 * 2000  # every child event, in that run
    assert details.status.value == "COMPLETED"
    assert kit.stored(client, customer, "delivery.calls") == (8200, 0)
    assert len(client.list_runs(customer_id=customer).data) == 1  # one run, not five


def test_multiprocessing_pool_children_deliver_everything(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    body = """
    import multiprocessing

    client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=30)

    def task(n):
        with client.run("pool-task", customer_id=CUSTOMER):
            for i in range(100):
                work(i)
        return n

    if __name__ == "__main__":
        with client.run("pool-parent", customer_id=CUSTOMER):
            work(0)  # the parent's buffer holds an open run when the pool forks
            with multiprocessing.get_context("fork").Pool(4) as pool:
                done = pool.map(task, range(80))
        print("done", len(done), client.flush(60).ok, flush=True)
    """
    proc = kit.spawn(kit.script(tmp_path, body), account, customer)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert out.strip() == "done 80 True", out + err
    # 80 tasks x 100 events in the children (ended by the pool's SIGTERM), 1 in the parent
    assert kit.stored(client, customer, "delivery.calls") == (8001, 0)
    runs = client.list_runs(customer_id=customer, limit=100).data
    assert len(runs) == 81 and {r.status.value for r in runs} == {"COMPLETED"}


MAIN_THREAD_CANNOT_TAKE_IT = f"""
import threading
client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=60)
with client.run("stuck", customer_id=CUSTOMER):
    for i in range({N}):
        work(i)
# the state of a Pool worker whose SIGTERM came just before it blocked on the pool's lock:
# the main thread waits in C and will not run a Python handler; another thread of the
# application takes the process's signals
threading.Thread(target=threading.Event().wait, daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
print("recorded", client.stats().pending, flush=True)
threading.Event().wait()
"""


def test_sigterm_the_main_thread_cannot_handle_still_flushes_and_ends_the_process(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """Python runs signal handlers on the main thread only: one blocked in C when SIGTERM
    came (a ``multiprocessing.Pool`` worker at ``Pool.terminate()``, hit in the window before
    it blocks on the pool's lock) never ran drip's handler, and the process, which SIGTERM's
    default action would have ended, waited forever (the pool's ``with`` block with it).
    drip's C handler hands the signal to a drip thread, which flushes and ends the process."""
    proc = kit.spawn(kit.script(tmp_path, MAIN_THREAD_CANNOT_TAKE_IT), account, customer)
    assert kit.wait_line(proc, "recorded") == f"recorded {N + 2}"
    os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("SIGTERM did not end the process: nothing heard it") from None
    assert proc.returncode == -signal.SIGTERM, err
    assert kit.stored(client, customer, "delivery.calls") == (N, 0)


CHILD_SIGTERM_IS_NOT_THE_PARENTS = """
client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=60)
with client.run("parent", customer_id=CUSTOMER):
    for i in range(10):
        work(i)
pid = os.fork()
if pid == 0:  # a child that records nothing: its signal handler is still the parent's
    time.sleep(600)
    os._exit(0)
time.sleep(0.5)
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
time.sleep(1)  # what the parent's watching thread would have done by now
print("child", os.WIFSIGNALED(status) and os.WTERMSIG(status), "parent alive", flush=True)
print("flushed", client.flush(30).ok, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_fork_childs_sigterm_does_not_stop_the_parent(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """The child inherits drip's C handler and the parent's pipe: it must not write there
    (the parent's thread would take the child's SIGTERM for its own and end the parent)."""
    proc = kit.spawn(kit.script(tmp_path, CHILD_SIGTERM_IS_NOT_THE_PARENTS), account, customer)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"child {int(signal.SIGTERM)} parent alive" in out and "flushed True" in out, out + err
    assert kit.stored(client, customer, "delivery.calls") == (10, 0)


FORK_WHILE_ID_LOCK_HELD = """
import os, signal, threading
import drip._scopes as scopes
from drip import Drip

client = Drip("sk_test_fork", "http://127.0.0.1:9", handle_signals=False, shutdown_timeout=0)
held, release = threading.Event(), threading.Event()

def hold():  # as the delivery worker does while it formats a run id
    with scopes._id_lock:
        held.set()
        release.wait()

threading.Thread(target=hold, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a hung child ends (status SIGALRM) instead of outliving the test
    with client.run("after-fork", customer_id="cus_fork") as run:
        print("child", run.id[:4], flush=True)
    os._exit(0)
release.set()
_, status = os.waitpid(pid, 0)
print("status", status, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_fork_while_another_thread_makes_a_run_id_does_not_hang_the_child() -> None:
    """The run-id lock held by another thread at fork() is not inherited held."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_ID_LOCK_HELD], capture_output=True, text=True, timeout=90
    )
    assert result.stdout.split() == ["child", "run_", "status", "0"], result.stdout + result.stderr


def test_fork_inside_a_web_request_before_its_run_is_used_keeps_one_run(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    # a request's run is deferred (its start waits for a first use); a fork before any use
    # must not leave the parent and the child each their own run
    body = """
    import asyncio
    from drip.integrations.asgi import DripMiddleware

    drip.configure(api_key=os.environ["KEY"], base_url=os.environ["URL"], flush_interval=30)
    codes = []

    async def app(scope, receive, send):
        pid = os.fork()  # nothing referred to the request's run yet
        if pid == 0:
            for i in range(500):
                work(i)
            report = drip.flush(60)
            os._exit(0 if report.ok and report.failed == 0 else 3)
        codes.append(os.waitpid(pid, 0)[1])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        scope = {"type": "http", "method": "GET", "path": "/fork", "raw_path": b"/fork",
                 "headers": [], "query_string": b"", "root_path": "", "scheme": "http",
                 "server": ("test", 80), "client": ("test", 1), "http_version": "1.1",
                 "asgi": {"version": "3.0"}}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        await DripMiddleware(app, customer=lambda request: CUSTOMER)(scope, receive, send)

    asyncio.run(main())
    print("done", codes, drip.flush(60).ok, flush=True)
    """
    proc = kit.spawn(kit.script(tmp_path, body), account, customer)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == "done [0] True\n", out + err
    [run] = client.list_runs(customer_id=customer).data  # one run, not one per process
    assert client.get_run(run.id).totals.event_count == 500 + 1  # the child's, the request's
    assert kit.stored(client, customer, "delivery.calls") == (500, 0)


def test_the_first_send_at_exit_needs_no_import_then(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """Nothing is sent before the process ends (a long flush interval), and no pydantic model
    was built in it: at exit, after ``threading`` has shut thread pools to new work, reading
    the ingest answer must not build its parser then. A real pydantic plugin (entry point
    ``pydantic``) that needs a thread pool at import, as logfire's does (OpenTelemetry's
    resource detection), failed there, and 44 delivered records were reported lost."""
    site = tmp_path / "site"
    (site / "pool_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "pool_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pool-plugin\nVersion: 1.0\n"
    )
    (site / "pool_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[pydantic]\npool_plugin = pool_plugin:plugin\n"
    )
    (site / "pool_plugin.py").write_text(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(1) as pool:  # raises once the interpreter is shutting down\n"
        "    pool.submit(int).result()\n"
        "class _Plugin:\n"
        "    def new_schema_validator(self, *args, **kwargs):\n"
        "        return None, None, None\n"
        "plugin = _Plugin()\n"
    )
    body = f"""
client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=600)
with client.run("at-exit", customer_id=CUSTOMER):
    for i in range({N}):
        work(i)
assert "pool_plugin" not in sys.modules  # nothing built a model yet
print("recorded", client.stats().pending, flush=True)
"""
    path = kit.script(tmp_path, body)
    proc = kit.spawn(path, account, customer, PYTHONPATH=str(site))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip() == f"recorded {N + 2}", err
    assert "not delivered" not in err and "drip" not in err, err
    assert kit.stored(client, customer, "delivery.calls") == (N, 0)


def test_sigterm_to_a_containers_init_process_flushes_and_lets_it_go_on(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """``CMD ["python", "app.py"]``: the process is PID 1 of its namespace, where the kernel
    ignores SIGTERM's default action, so without drip it goes on after ``docker stop``'s
    SIGTERM (until SIGKILL). It used to go on with its deliveries shut down: everything it
    recorded after the signal was dropped, and its run was never ended. Now the signal
    flushes, and the process and its deliveries go on."""
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode:
        pytest.skip("no permission to make a PID namespace (unshare --pid) here")
    body = """
client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=600)
assert os.getpid() == 1
with client.run("init", customer_id=CUSTOMER) as run:
    for i in range(100):
        work(i)
    print("recorded", flush=True)
    while client.stats().sent == 0:  # only SIGTERM's flush sends (flush_interval=600)
        time.sleep(0.01)
    print("flushed", client.stats().sent, flush=True)
    for i in range(100):
        work(i)
print("run", run.id, flush=True)
"""
    path = kit.script(tmp_path, body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    env.update(KEY=account.secret_key, URL=account.base_url, CUSTOMER=customer)
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    kit.wait_line(proc, "recorded")
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGTERM)  # the script, PID 1 in its namespace
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    flushed, run_line = out.splitlines()
    assert flushed == "flushed 101", err  # the run's start and its 100 events
    assert "dropped" not in err and "drip" not in err, err
    assert kit.stored(client, customer, "delivery.calls") == (200, 0)
    assert client.get_run(run_line.split()[1]).status.value == "COMPLETED"


def test_records_made_after_a_shutdown_are_all_said_before_the_process_ends(
    tmp_path: Path, account: Any, customer: str, kit: Any
) -> None:
    """The first drop is said at once and later ones at most once a second: a process that
    ends sooner said only the first (1 of 52)."""
    body = """
client = Drip(os.environ["KEY"], os.environ["URL"])
with client.run("early", customer_id=CUSTOMER):
    work(0)
client.close()
with client.run("late", customer_id=CUSTOMER):
    for i in range(50):
        work(i)
print("stats", client.stats().dropped, flush=True)
"""
    proc = kit.spawn(kit.script(tmp_path, body), account, customer)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "stats 52", err
    said = [int(line.split()[1]) for line in err.splitlines() if "records were dropped" in line]
    assert sum(said) == 52, err


def test_workers_forked_without_the_at_fork_hooks_make_ids_of_their_own(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """uWSGI forks its workers in C and, by default, runs none of Python's at-fork hooks
    (``--py-call-osafterfork`` is off): here libc's ``fork()``, called through ctypes. Both
    workers made their ids from the master's prefix and counters, so the server stored one
    worker's run, events and usage and answered the other's as duplicates of them."""
    body = """
import ctypes
client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=600)
fork = ctypes.PyDLL(None).fork  # holds the GIL across fork(), as uWSGI's master does
children = []
for worker in range(2):
    pid = fork()
    if pid == 0:
        with client.run("worker", customer_id=CUSTOMER):
            for i in range(50):
                work(i)
        client.track_usage(customer_id=CUSTOMER, meter="delivery.usage", quantity=1)
        report = client.flush(60)
        os._exit(0 if report.ok and client.stats().duplicates == 0 else 3)
    children.append(pid)
print("codes", [os.waitpid(pid, 0)[1] for pid in children], flush=True)
"""
    proc = kit.spawn(kit.script(tmp_path, body), account, customer)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip() == "codes [0, 0]", out + err
    assert kit.stored(client, customer, "delivery.calls") == (100, 0)
    assert kit.stored(client, customer, "delivery.usage") == (0, 2)
    assert len(client.list_runs(customer_id=customer).data) == 2


def test_under_uwsgi_drip_chains_into_its_post_fork_and_atexit_hooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uWSGI forks its workers in C without Python's at-fork hooks (unless
    ``--py-call-osafterfork``) and calls ``uwsgi.post_fork_hook`` in each instead; it stops
    them by a signal whose handler exits the process, calling ``uwsgi.atexit``, while Python's
    ``atexit`` callbacks did not come in our runs of uWSGI 2.0.31 (a real uWSGI, 2 workers,
    40 requests: 0-26 of 40 stored without the hooks, 40 of 40 in 2 runs of 3 with them).
    The ``uwsgi`` module exists only inside uWSGI: here a stand-in with its ``opt``."""
    import types

    from drip._delivery import lifecycle

    calls: list[str] = []
    uwsgi = types.ModuleType("uwsgi")
    uwsgi.opt = {}  # type: ignore[attr-defined]
    uwsgi.atexit = lambda: calls.append("the application's atexit")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
    monkeypatch.setattr(lifecycle, "_uwsgi_hooked", False)
    monkeypatch.setattr(lifecycle, "shutdown_all", lambda: calls.append("drip's atexit"))
    monkeypatch.setattr(lifecycle, "run_unseen", lambda: calls.append("drip's post-fork"))
    lifecycle._hook_uwsgi()
    lifecycle._hook_uwsgi()  # once per process
    uwsgi.post_fork_hook()  # type: ignore[attr-defined]
    uwsgi.atexit()  # type: ignore[attr-defined]
    assert calls == ["drip's post-fork", "drip's atexit", "the application's atexit"]


def test_the_resets_of_a_fork_the_hooks_did_not_see_run_once_and_keep_what_the_child_records(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any
) -> None:
    """libc's ``fork()`` (through ctypes) after the parent's delivery started: what uWSGI
    does. ``drip._forks.run_unseen`` is what drip's ``uwsgi.post_fork_hook`` calls; without
    it the child's records went into the parent's buffer, with no thread to send them, and
    were dropped unsaid when the fork was noticed (the flush said ``sent=-2``)."""
    body = """
import ctypes
from drip import _forks
client = Drip(os.environ["KEY"], os.environ["URL"])
with client.run("parent", customer_id=CUSTOMER):
    work(0)
assert client.flush(30).ok
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    _forks.run_unseen()
    _forks.run_unseen()  # once
    with client.run("child", customer_id=CUSTOMER):
        for i in range(50):
            work(i)
    report = client.flush(30)
    os._exit(0 if (report.sent, report.failed, report.pending) == (52, 0, 0) else 3)
print("child", os.waitpid(pid, 0)[1], flush=True)
"""
    proc = kit.spawn(kit.script(tmp_path, body), account, customer)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip() == "child 0", out + err
    assert kit.stored(client, customer, "delivery.calls") == (51, 0)
    assert len(client.list_runs(customer_id=customer).data) == 2


GEVENT_SCRIPT = """
from gevent import monkey

monkey.patch_all()  # first, as gevent wants: signal handlers then run in its event loop
import os, signal, sys, time
from drip import Drip
from drip import instrument as dm

@dm.metered("delivery.calls")
def work(i=0):
    return i

if sys.argv[1] == "chained":  # an application's handler first (a gunicorn gevent worker's)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))
client = Drip(os.environ["KEY"], os.environ["URL"], flush_interval=600)
with client.run("gevent", customer_id=os.environ["CUSTOMER"]):
    for i in range(300):
        work(i)
print("recorded", flush=True)
time.sleep(60)  # SIGTERM arrives here
"""


@pytest.mark.parametrize(("handler", "status"), [("default", -signal.SIGTERM), ("chained", 5)])
def test_sigterm_in_a_gevent_patched_process_flushes_in_a_greenlet(
    tmp_path: Path, account: Any, client: Drip, customer: str, kit: Any, handler: str, status: int
) -> None:
    """gevent runs signal handlers in its event loop, where waiting raises
    ``BlockingSwitchOutError``: the flush failed with a traceback and, with Python's default
    handler, the process then died by SIGTERM with all 302 records unsent."""
    pytest.importorskip("gevent")
    path = tmp_path / "gevented.py"
    path.write_text(GEVENT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    env.update(KEY=account.secret_key, URL=account.base_url, CUSTOMER=customer)
    proc = subprocess.Popen(
        [sys.executable, str(path), handler],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    kit.wait_line(proc, "recorded")
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "drip" not in err, err
    assert kit.stored(client, customer, "delivery.calls") == (300, 0)
