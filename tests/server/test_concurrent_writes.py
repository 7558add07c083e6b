"""Two writers of the same run or event at once (two worker processes answering a client and its
retry): one stores it, the other answers the stored one as a duplicate — never a 500, a second
run, or an id that names nothing.

On SQLite writers take turns (``BEGIN IMMEDIATE``), so these pass trivially there; on PostgreSQL
(``DRIP_TEST_DATABASE_URL``) they run side by side, and the second writer's look-up runs while
the first's row is not yet committed. Each test pauses the first writer inside its transaction,
after its insert, lets the second one start, then lets the first commit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from drip.models import (
    CreateCustomerRequest,
    EmitEventRequest,
    RecordRunRequest,
    StartRunRequest,
)
from drip.server.keys import KeyStore
from drip.server.storage import customers as storage_customers
from drip.server.storage import runs as storage_runs
from drip.server.storage.database import Database
from drip.server.storage.schema import events, runs


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def account_id(db: Database) -> int:
    KeyStore(db).create_key("race")
    with db.read() as conn:
        from drip.server.storage.schema import accounts

        return int(conn.execute(select(accounts.c.seq).where(accounts.c.name == "race")).scalar())


@pytest.fixture
def customer_id(db: Database, account_id: int) -> str:
    req = CreateCustomerRequest(external_customer_id="racer")
    return storage_customers.create_customer(db, account_id, req)[0].id


def race(
    monkeypatch: pytest.MonkeyPatch,
    hold_after: str,
    first: Callable[[], Any],
    second: Callable[[], Any],
    where: Any = storage_runs,
) -> tuple[Any, Any]:
    """Run ``first`` in a thread that pauses inside its transaction, when its call of
    ``where.<hold_after>`` returns; start ``second`` meanwhile; then let ``first`` go."""
    original = getattr(where, hold_after)
    held, release = threading.Event(), threading.Event()
    holder: list[threading.Thread] = []

    def pausing(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        if threading.current_thread() in holder:
            held.set()
            assert release.wait(10)
        return out

    monkeypatch.setattr(where, hold_after, pausing)
    with ThreadPoolExecutor(2) as pool:

        def run_first() -> Any:
            holder.append(threading.current_thread())
            return first()

        one = pool.submit(run_first)
        assert held.wait(10), "the first writer never reached its pause"
        two = pool.submit(second)
        time.sleep(0.5)  # the second writer reaches its look-up and insert
        release.set()
        return one.result(timeout=20), two.result(timeout=20)


def count(db: Database, table: Any, *where: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


def new_run(db: Database, account_id: int, customer_id: str) -> str:
    req = StartRunRequest(customer_id=customer_id, workflow_id="race")
    return storage_runs.start_run(db, account_id, req).id


@pytest.mark.parametrize("by", ["idempotency_key", "id"])
def test_same_event_twice_at_once(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    run_id = new_run(db, account_id, customer_id)
    value = "key-1" if by == "idempotency_key" else "evt_race_1"
    req = EmitEventRequest(run_id=run_id, event_type="step", quantity=2, **{by: value})
    first, second = race(
        monkeypatch,
        "roll_events",
        lambda: storage_runs.emit_event(db, account_id, req),
        lambda: storage_runs.emit_event(db, account_id, req),
    )
    assert (first.is_duplicate, second.is_duplicate) == (False, True)
    assert second.id == first.id
    assert count(db, events, events.c.run_id == run_id) == 1


def test_same_batch_twice_at_once(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run(db, account_id, customer_id)
    items = [
        {"runId": run_id, "eventType": "a", "idempotencyKey": "k-a"},
        {"runId": run_id, "eventType": "b", "id": "evt_race_b"},
    ]
    first, second = race(
        monkeypatch,
        "roll_events",
        lambda: storage_runs.emit_events_batch(db, account_id, items),
        lambda: storage_runs.emit_events_batch(db, account_id, items),
    )
    assert (first.created, first.duplicates) == (2, 0)
    assert (second.created, second.duplicates) == (0, 2)
    assert [e.is_duplicate for e in second.events] == [True, True]
    assert [e.id for e in second.events] == [e.id for e in first.events]
    assert count(db, events, events.c.run_id == run_id) == 2


@pytest.mark.parametrize("by", ["id", "external_run_id"])
def test_same_run_started_twice_at_once(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    req = StartRunRequest(customer_id=customer_id, workflow_id="race", **{by: "run_race_1"})
    first, second = race(
        monkeypatch,
        "require_run",
        lambda: storage_runs.start_run(db, account_id, req),
        lambda: storage_runs.start_run(db, account_id, req),
    )
    assert (first.is_duplicate, second.is_duplicate) == (False, True)
    assert second.id == first.id
    assert count(db, runs, runs.c.customer_id == customer_id) == 1


@pytest.mark.parametrize("by", ["id", "external_run_id"])
def test_same_run_recorded_twice_at_once(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    req = RecordRunRequest.model_validate(
        {
            "customerId": customer_id,
            "workflow": "race",
            "events": [{"eventType": "llm", "quantity": 5}, {"eventType": "tool"}],
            "id" if by == "id" else "externalRunId": "run_race_2",
        }
    )
    first, second = race(
        monkeypatch,
        "roll_events",
        lambda: storage_runs.record_run(db, account_id, req),
        lambda: storage_runs.record_run(db, account_id, req),
    )
    assert (first.events.created, first.events.duplicates) == (2, 0)
    assert (second.events.created, second.events.duplicates) == (0, 2)
    assert second.run.id == first.run.id
    assert count(db, runs, runs.c.customer_id == customer_id) == 1
    assert count(db, events, events.c.customer_id == customer_id) == 2


def test_same_ingest_batch_twice_at_once(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's batch sent again while the first is still being stored (a retry after a
    timeout, to another worker): the second answers every item a duplicate, the run start
    included (it answered 'created' twice on PostgreSQL)."""
    from drip.server.storage import ingest as storage_ingest

    items = [
        {"type": "run.start", "id": "run_race_3", "customerId": customer_id, "workflow": "w"},
        {"type": "event", "id": "evt_race_3", "runId": "run_race_3", "eventType": "e"},
    ]
    raw = json.dumps({"items": items}).encode()
    first, second = race(
        monkeypatch,
        "write",
        lambda: storage_ingest.ingest(db, account_id, raw),
        lambda: storage_ingest.ingest(db, account_id, raw),
        where=storage_ingest._Apply,
    )
    assert first.statuses == ["created", "created"]
    assert second.statuses == ["duplicate", "duplicate"]
    assert count(db, runs, runs.c.id == "run_race_3") == 1


def test_same_run_ended_twice_at_once(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers ending the same run at once (the SDK's batch and its retry): the second
    answers as a second end sent afterwards does, ``duplicate`` (both answered 'updated' on
    PostgreSQL), and the run keeps the first end's time and metadata."""
    from drip.server.storage import ingest as storage_ingest

    run_id = new_run(db, account_id, customer_id)

    def end(at: str, note: str) -> bytes:
        item = {"type": "run.end", "runId": run_id, "status": "COMPLETED", "endedAt": at}
        return json.dumps({"items": [{**item, "metadata": {"note": note}}]}).encode()

    first_end = end("2030-01-01T00:00:01.000000Z", "first")
    second_end = end("2030-01-01T00:00:02.000000Z", "second")
    first, second = race(
        monkeypatch,
        "write",
        lambda: storage_ingest.ingest(db, account_id, first_end),
        lambda: storage_ingest.ingest(db, account_id, second_end),
        where=storage_ingest._Apply,
    )
    again = storage_ingest.ingest(db, account_id, second_end)
    assert (
        (first.statuses, second.statuses)
        == (["updated"], again.statuses)
        == (
            ["updated"],
            ["duplicate"],
        )
    )
    with db.read() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).one()
    assert (row.status, row.ended_at, row.meta) == (
        "COMPLETED",
        "2030-01-01T00:00:01.000000Z",
        {"note": "first"},
    )


def test_same_run_ended_twice_at_once_by_patch(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PATCH /runs/{id}`` twice at once with the same status: the second changes nothing, as
    when sent afterwards (it overwrote the first's endedAt, and its metadata merge read the run
    before the first's metadata was there)."""
    from drip.models import EndRunRequest

    run_id = new_run(db, account_id, customer_id)

    def end(at: str, note: str) -> EndRunRequest:
        body = {"status": "COMPLETED", "endedAt": at, "metadata": {note: True}}
        return EndRunRequest.model_validate(body)

    first, second = race(
        monkeypatch,
        "run_totals",
        lambda: storage_runs.end_run(db, account_id, run_id, end("2030-01-01T00:00:01Z", "a")),
        lambda: storage_runs.end_run(db, account_id, run_id, end("2030-01-01T00:00:02Z", "b")),
    )
    assert first.ended_at == second.ended_at == "2030-01-01T00:00:01.000000Z"
    with db.read() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).one()
    assert (row.ended_at, row.meta) == ("2030-01-01T00:00:01.000000Z", {"a": True})


def test_a_run_ended_two_ways_at_once_keeps_the_first_end(
    db: Database, account_id: int, customer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMPLETED by ``PATCH`` while an SDK batch ends the same run FAILED, at once, both ways
    round: the first end wins (the later one overwrote it), and the other answers as a second
    end sent afterwards does, a duplicate naming the stored status."""
    from drip.models import EndRunRequest
    from drip.server.storage import ingest as storage_ingest

    def patch(run_id: str) -> Any:
        req = EndRunRequest.model_validate({"status": "COMPLETED", "metadata": {"by": "patch"}})
        return storage_runs.end_run(db, account_id, run_id, req)

    def batch(run_id: str) -> Any:
        item = {"type": "run.end", "runId": run_id, "status": "FAILED", "errorCode": "E"}
        raw = json.dumps({"items": [{**item, "metadata": {"by": "batch"}}]}).encode()
        return storage_ingest.ingest(db, account_id, raw)

    run_id = new_run(db, account_id, customer_id)
    patched, batched = race(monkeypatch, "run_totals", lambda: patch(run_id), lambda: batch(run_id))
    assert (patched.status.value, patched.is_duplicate) == ("COMPLETED", False)
    assert batched.statuses == ["duplicate"]
    assert batched.problems[0][0] == "RUN_ALREADY_ENDED" and "COMPLETED" in batched.problems[0][1]
    monkeypatch.undo()
    other = new_run(db, account_id, customer_id)
    batched, patched = race(
        monkeypatch,
        "write",
        lambda: batch(other),
        lambda: patch(other),
        where=storage_ingest._Apply,
    )
    assert batched.statuses == ["updated"]
    assert (patched.status.value, patched.is_duplicate) == ("FAILED", True)
    with db.read() as conn:
        rows = {r.id: r for r in conn.execute(select(runs).where(runs.c.id.in_([run_id, other])))}
    assert (rows[run_id].status, rows[run_id].error_code, rows[run_id].meta) == (
        "COMPLETED",
        None,
        {"by": "patch"},
    )
    assert (rows[other].status, rows[other].error_code, rows[other].meta) == (
        "FAILED",
        "E",
        {"by": "batch"},
    )


def test_one_wallet_in_two_letter_cases_created_at_once(
    db: Database, account_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests creating a customer for one EVM address, spelled in two letter cases, at
    once: one customer, which the second answers as a duplicate, with the first's spelling."""
    wallet = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    first_req = CreateCustomerRequest(onchain_address=wallet)
    second_req = CreateCustomerRequest(onchain_address=wallet.lower(), return_existing=True)
    (first, made), (second, made_again) = race(
        monkeypatch,
        "customer_row",
        lambda: storage_customers.create_customer(db, account_id, first_req),
        lambda: storage_customers.create_customer(db, account_id, second_req),
        where=storage_customers,
    )
    assert (made, made_again) == (True, False)
    assert second.id == first.id and second.onchain_address == wallet
    from drip.server.storage.schema import customers

    assert count(db, customers, customers.c.account_id == account_id) == 1


def test_two_servers_starting_on_one_new_database_make_one_set_of_keys(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ``drip serve`` starting together on a new database: one makes the default account's
    keys and shows them; the other finds them made (it made a second pair on SQLite and could
    fail on the accounts' unique name on PostgreSQL)."""
    from drip.server import keys as keys_module

    first_db, second_db = Database(database_url), Database(database_url)
    try:
        first_db.upgrade()
        original = keys_module.now_iso
        held, release = threading.Event(), threading.Event()
        holder: list[threading.Thread] = []

        def pausing() -> str:
            if threading.current_thread() in holder and not held.is_set():
                held.set()  # inside the first one's write, before it commits
                assert release.wait(10)
            return original()

        monkeypatch.setattr(keys_module, "now_iso", pausing)
        with ThreadPoolExecutor(2) as pool:

            def run_first() -> Any:
                holder.append(threading.current_thread())
                return KeyStore(first_db).bootstrap()

            one = pool.submit(run_first)
            assert held.wait(10)
            two = pool.submit(KeyStore(second_db).bootstrap)
            time.sleep(0.5)
            release.set()
            made = [one.result(timeout=20), two.result(timeout=20)]
        assert made[0] is not None and made[1] is None
        from drip.server.storage.schema import api_keys

        assert count(first_db, api_keys) == 2
    finally:
        first_db.dispose()
        second_db.dispose()
