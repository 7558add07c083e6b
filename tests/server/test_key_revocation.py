"""``drip keys revoke``: a revoked key is refused (401) by every worker of a running server once
``CACHE_SECONDS`` (1 s) have passed; the revocation is stored (when, by whom); an account's last secret key needs --force;
revision 0005 goes down and up. SQLite here; PostgreSQL with ``DRIP_TEST_DATABASE_URL``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect, select

from drip.cli import main
from drip.server.keys import CACHE_SECONDS, KeyRefused, KeyStore
from drip.server.storage import migrations, schema
from drip.server.storage.database import Database

from .test_migrations import _free_port, _serve, _stop, _wait_for


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    found = Database(database_url)
    found.upgrade()
    yield found
    found.dispose()


def test_a_revoked_key_is_refused_by_every_worker_within_a_second(database_url: str) -> None:
    """Two workers, each of which has accepted the key (and trusts it for CACHE_SECONDS);
    `drip keys revoke` (another process's write); after CACHE_SECONDS, every request, on new
    connections, is 401 naming the revocation (before: no revoke, and workers cached keys for
    good)."""
    port = _free_port()
    process = _serve(database_url, port, "--workers", "2")
    log = ""
    try:
        log = _wait_for(process, r"public key: ")
        public = log.rsplit("public key: ", 1)[1].split()[0]
        secret = log.rsplit("secret key: ", 1)[1].split()[0]
        for _ in range(2):
            log += _wait_for(process, r"Application startup complete")
        url = f"http://127.0.0.1:{port}/v1/customers"

        def post(key: str, n: int) -> httpx.Response:
            body = {"externalCustomerId": f"user-{n}"}
            return httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"})

        # new connections: uvicorn's workers share the socket, so both see the key
        assert all(post(public, n).status_code == 201 for n in range(12))
        assert main(["keys", "revoke", "--database-url", database_url, public[:12]]) == 0
        time.sleep(CACHE_SECONDS)
        for n in range(12):
            refused = post(public, 100 + n)
            assert refused.status_code == 401, (n, refused.text)
            assert "revoked" in refused.json()["message"]
        assert post(secret, 200).status_code == 201  # the other key of the account still works
    finally:
        log += _stop(process)
    assert "Traceback" not in log, log


def test_the_revocation_is_stored_and_listed(
    db: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = KeyStore(db)
    secret, public = store.create_key("acme"), store.create_key("acme", public=True)
    info, done = store.revoke(public, by="ops@example")
    assert done and (info.kind, info.account, info.revoked_by) == ("public", "acme", "ops@example")
    principal = store.verify(public)
    assert principal is not None and principal.revoked_at == info.revoked_at
    again, done = store.revoke(public[:12], by="someone else")
    assert not done and (again.revoked_at, again.revoked_by) == (info.revoked_at, "ops@example")
    with db.read() as conn:
        row = conn.execute(select(schema.api_keys).where(schema.api_keys.c.seq == info.id)).one()
    assert (row.revoked_at, row.revoked_by) == (info.revoked_at, "ops@example")
    assert main(["keys", "list", "--database-url", database_url, "--account", "acme"]) == 0
    listing = capsys.readouterr().out
    assert f"{public[:12]}…" in listing and "by ops@example" in listing
    assert f"{secret[:12]}…" in listing and secret not in listing and public not in listing
    # an already revoked key: said so, exit 0 (a script revoking twice is not failing)
    assert main(["keys", "revoke", "--database-url", database_url, public]) == 0
    assert "already revoked" in capsys.readouterr().out


def test_the_last_secret_key_needs_force(
    db: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = KeyStore(db)
    first = store.create_key("solo")
    store.create_key("solo", public=True)
    store.create_key("other")  # another account's secret key does not count
    assert main(["keys", "revoke", "--database-url", database_url, first]) == 2
    assert "last secret key of account 'solo'" in capsys.readouterr().err
    assert store.verify(first).revoked_at is None  # type: ignore[union-attr]
    second = store.create_key("solo")
    assert store.revoke(first, by="t")[1]  # one is left: no --force needed
    with pytest.raises(KeyRefused, match="last secret key"):
        store.revoke(second, by="t")
    assert main(["keys", "revoke", "--database-url", database_url, "--force", second]) == 0
    assert store.verify(second).revoked_at is not None  # type: ignore[union-attr]


def test_a_key_named_by_too_little_or_too_much_is_not_guessed(db: Database) -> None:
    store = KeyStore(db)
    keys = [store.create_key("many", public=True) for _ in range(3)]
    with pytest.raises(KeyRefused, match="3 keys start with 'pk_local_'"):
        store.revoke("pk_local_", by="t")
    with pytest.raises(KeyRefused, match="no key starts with"):
        store.revoke("sk_nothing", by="t")
    # longer than the stored hint but not a whole key: the rest cannot be checked
    with pytest.raises(KeyRefused, match="not a whole key"):
        store.revoke(keys[0][:20], by="t")
    with pytest.raises(KeyRefused, match="a key of account 'many', not 'elsewhere'"):
        store.revoke(keys[0], by="t", account="elsewhere")
    with pytest.raises(KeyRefused, match="no key of account 'elsewhere' starts with"):
        store.revoke(keys[0][:12], by="t", account="elsewhere")
    assert all(store.verify(k).revoked_at is None for k in keys)  # type: ignore[union-attr]
    # a prefix matching a revoked key and a live one is not taken as the live one
    first = store.list_keys("many")[0]
    store.revoke(str(first.id), by="t")  # by the id `drip keys list` shows
    with pytest.raises(KeyRefused, match="3 keys start with"):
        store.revoke("pk_local_", by="t")
    with pytest.raises(KeyRefused, match="no key has the id 999"):
        store.revoke("999", by="t")
    revoked = [k.id for k in store.list_keys("many") if k.revoked_at]
    assert revoked == [first.id]


def test_revision_0005_goes_down_and_up(db: Database, database_url: str) -> None:
    """Down to 0004: the revocation columns go, and so do the revoked keys' rows (0004 would
    accept them again); the other keys stay. Up again: the columns are back."""
    store = KeyStore(db)
    kept, revoked = store.create_key("mig"), store.create_key("mig", public=True)
    store.revoke(revoked, by="t")
    with db.engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0004")
    columns = {c["name"] for c in inspect(db.engine).get_columns("api_keys")}
    assert "revoked_at" not in columns and "revoked_by" not in columns
    assert migrations.current(db) == "0004"
    db.upgrade()
    assert migrations.current(db) == migrations.head()
    assert store.verify(revoked) is None
    found = store.verify(kept)
    assert found is not None and found.revoked_at is None


def test_a_key_revoked_in_this_process_is_refused_at_once(db: Database) -> None:
    """The store that revokes forgets what it trusted (an embedded server's own revocation)."""
    store = KeyStore(db)
    store.create_key("here")
    key = store.create_key("here", public=True)
    assert store.verify(key).revoked_at is None  # type: ignore[union-attr]
    store.revoke(key, by="t")
    assert store.verify(key).revoked_at is not None  # type: ignore[union-attr]


def test_list_and_revoke_refuse_a_database_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --db: said so (exit 2), not an empty database made and answered about."""
    missing = tmp_path / "typo.db"
    assert main(["keys", "list", "--db", str(missing)]) == 2
    assert main(["keys", "revoke", "--db", str(missing), "sk_local_abc"]) == 2
    assert capsys.readouterr().err.count(f"no database at {missing}") == 2
    assert not missing.exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["keys", "create", "--account", "acc\udcff"], "not valid UTF-8"),
        (["keys", "create", "--account", "  "], "cannot be empty"),
        (["keys", "create", "--account", "a" * 257], "at most 256 characters"),
        (["keys", "create", "--account", "a\x01b"], "control character"),
        (["keys", "list", "--account", "acc\udcff"], "not valid UTF-8"),
        (["keys", "revoke", "sk_\udcff"], "not valid UTF-8"),
        (["keys", "revoke", "sk_local_", "--by", "me\udcff"], "not valid UTF-8"),
        (["keys", "revoke", "sk_local_", "--by", "x" * 300], "at most 256 characters"),
    ],
)
def test_names_and_keys_that_cannot_be_stored_are_refused_by_name(
    db: Database,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    said: str,
) -> None:
    """A non-UTF-8 account name or key (bytes the shell could not decode), an empty, too long
    or control-character name: exit 2 naming the problem; they were tracebacks (a surrogate
    cannot be encoded, PostgreSQL's VARCHAR(256)) or stored (an empty name)."""
    KeyStore(db).create_key("someone")
    assert main([*argv, "--database-url", database_url]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert [k.account for k in KeyStore(db).list_keys()] == ["someone"]


def test_who_revokes_is_stored_even_from_an_odd_environment(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user name that is not UTF-8 (``USER`` with a stray byte): escaped, not a traceback."""
    store = KeyStore(db)
    store.create_key("env")
    key = store.create_key("env", public=True)
    monkeypatch.setenv("LOGNAME", "r\udcff")
    monkeypatch.setenv("USER", "r\udcff")
    assert main(["keys", "revoke", "--database-url", database_url, key]) == 0
    (revoked,) = [k for k in store.list_keys("env") if k.revoked_at]
    assert revoked.revoked_by is not None and revoked.revoked_by.startswith("r\\xff@")
