"""API keys: creation, hashing, verification and revocation (what each kind may do: ``scopes``).

A key is ``sk_local_<48 hex>`` (secret) or ``pk_local_<48 hex>`` (public). Only its SHA-256 is
stored, with its first 12 characters (the hint listings show); a presented key is hashed, looked
up by hash and compared in constant time. A revoked key (``drip keys revoke``: when and by whom
is stored on its row) is refused with 401 by every worker within ``CACHE_SECONDS`` (1 s): a
worker keeps a key it verified for that long, not longer (reading the key's row on every
request costs 0.15 ms on SQLite and 0.7 ms on PostgreSQL here; a second's staleness is the
price of not paying it). A key that is unknown or revoked is never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, select, update

from .clock import now_iso
from .storage import schema
from .storage.bulk import lock_names
from .storage.database import Database

__all__ = [
    "CACHE_SECONDS",
    "DEFAULT_ACCOUNT",
    "HINT_LENGTH",
    "KeyInfo",
    "KeyRefused",
    "KeyStore",
    "Principal",
    "account_problem",
    "hash_key",
]

DEFAULT_ACCOUNT = "default"
#: how many first characters of a key are stored (and shown) as its hint
HINT_LENGTH = 12
#: how long a worker trusts a key it verified: a revocation holds everywhere after this
CACHE_SECONDS = 1.0


class KeyRefused(ValueError):
    """A revocation that was not done, and why (no key matches, several do, the last secret
    key of an account without ``force``)."""


def account_problem(name: str, what: str = "account name") -> str | None:
    """What makes ``name`` unfit to be an account's name (it is stored and listed), or None;
    ``what``: the thing named, for the message (``revoke --by`` checks who revokes the same)."""
    if not name.strip():
        return f"the {what} cannot be empty"
    if len(name) > 256:
        return f"the {what} has at most 256 characters, not {len(name)}"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return f"the {what} {name!r} is not valid UTF-8 (a byte the shell could not decode)"
    if not name.isprintable():
        return f"the {what} {name!r} holds a control character"
    return None


def _insert_key(conn: Connection, account: str, public: bool) -> str:
    """Store a new key of ``account`` (made if new) in this transaction; the key."""
    key = f"{'pk' if public else 'sk'}_local_{secrets.token_hex(24)}"
    lock_names(conn, ["drip-accounts"])  # two new accounts of one name: the later one waits
    account_id = conn.execute(
        select(schema.accounts.c.seq).where(schema.accounts.c.name == account)
    ).scalar()
    if account_id is None:
        inserted = conn.execute(
            schema.accounts.insert().values(name=account, created_at=now_iso())
        ).inserted_primary_key
        assert inserted is not None
        account_id = inserted[0]
    conn.execute(
        schema.api_keys.insert().values(
            account_id=account_id,
            key_hash=hash_key(key),
            kind="public" if public else "secret",
            hint=key[:HINT_LENGTH],
            created_at=now_iso(),
        )
    )
    return key


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account (internal integer id) and the kind of key."""

    account_id: int
    public: bool
    #: the key's row (``api_keys.seq``): what a public key's runs are owned by
    key_id: int = 0
    #: when the key was revoked (ISO-8601), or None: a revoked key is refused (401)
    revoked_at: str | None = None

    @property
    def owner(self) -> int | None:
        """The id runs started by this caller are owned by (public keys only)."""
        return self.key_id if self.public else None


def hash_key(key: str) -> str:
    """The stored form of a key (SHA-256, hex)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as listings show it: never the key, its first characters."""

    id: int
    account: str
    kind: str
    hint: str
    created_at: str
    revoked_at: str | None
    revoked_by: str | None


def _info_query() -> Select[Any]:
    keys, accounts = schema.api_keys, schema.accounts
    return (
        select(
            keys.c.seq,
            accounts.c.name,
            keys.c.kind,
            keys.c.hint,
            keys.c.created_at,
            keys.c.revoked_at,
            keys.c.revoked_by,
        )
        .join(accounts, accounts.c.seq == keys.c.account_id)
        .order_by(keys.c.seq)
    )


class KeyStore:
    """Accounts and their keys."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: key hash -> (principal, monotonic time until which it is trusted)
        self._cache: dict[str, tuple[Principal, float]] = {}

    def create_key(self, account: str = DEFAULT_ACCOUNT, public: bool = False) -> str:
        """A new key for ``account`` (created if new); the only time the key is visible.
        ``ValueError`` for a name that cannot be one (``account_problem``)."""
        problem = account_problem(account)
        if problem is not None:
            raise ValueError(problem)
        with self._db.write() as conn:
            return _insert_key(conn, account, public)

    def bootstrap(self) -> tuple[str, str] | None:
        """On an empty database: the default account with one secret and one public key. One
        transaction, so of several servers starting together on a new database exactly one
        makes (and shows) them."""
        with self._db.write() as conn:
            lock_names(conn, ["drip-accounts"])  # PostgreSQL; SQLite's writes take turns
            if conn.execute(select(schema.accounts.c.seq).limit(1)).first() is not None:
                return None
            return _insert_key(conn, DEFAULT_ACCOUNT, False), _insert_key(
                conn, DEFAULT_ACCOUNT, True
            )

    def verify(self, key: str) -> Principal | None:
        """The principal of a key (``revoked_at`` set when it was revoked), or None when the
        key is unknown. A key verified less than ``CACHE_SECONDS`` ago is not read again."""
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        keys = schema.api_keys
        with self._db.read() as conn:
            row = conn.execute(
                select(
                    keys.c.key_hash, keys.c.account_id, keys.c.kind, keys.c.seq, keys.c.revoked_at
                ).where(keys.c.key_hash == digest)
            ).first()
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return None
        principal = Principal(
            account_id=row.account_id,
            public=row.kind == "public",
            key_id=row.seq,
            revoked_at=row.revoked_at,
        )
        if principal.revoked_at is None:
            if len(self._cache) >= 10_000:  # many keys: start again rather than grow
                self._cache.clear()
            self._cache[digest] = (principal, now + CACHE_SECONDS)
        else:
            self._cache.pop(digest, None)
        return principal

    def list_keys(self, account: str | None = None) -> list[KeyInfo]:
        """Every stored key (of ``account`` when given), oldest first, revoked ones too."""
        query = _info_query()
        if account is not None:
            query = query.where(schema.accounts.c.name == account)
        with self._db.read() as conn:
            return [KeyInfo(*row) for row in conn.execute(query)]

    def revoke(
        self, ref: str, by: str, account: str | None = None, force: bool = False
    ) -> tuple[KeyInfo, bool]:
        """Revoke the key ``ref`` names: the whole key, its id (``drip keys list``), or the
        first characters of exactly one stored key (at most ``HINT_LENGTH``: no more of a key
        is stored). (the key as it is
        now, whether this call revoked it: False when it was revoked already). ``KeyRefused``
        when no key or several match, or for the last secret key of an account that still has
        one unless ``force``: that account could no longer read its data."""
        keys = schema.api_keys
        if any(0xD800 <= ord(c) <= 0xDFFF for c in ref):
            raise KeyRefused(f"{ref!r} is not a key: it holds a byte that is not valid UTF-8")
        with self._db.write() as conn:
            lock_names(conn, ["drip-accounts"])  # two revocations of an account take turns
            query = _info_query()
            exact = conn.execute(query.where(keys.c.key_hash == hash_key(ref))).all()
            if exact and account is not None and exact[0].name != account:
                raise KeyRefused(
                    f"{exact[0].hint}… is a key of account {exact[0].name!r}, not {account!r}"
                )
            if account is not None:
                query = query.where(schema.accounts.c.name == account)
            if exact:
                found = exact
            elif ref.isdigit():  # the ID `drip keys list` shows (no key or prefix is digits)
                found = conn.execute(query.where(keys.c.seq == int(ref))).all()
                if not found:
                    raise KeyRefused(f"no key{_of(account)} has the id {ref} (`drip keys list`)")
            elif len(ref) > HINT_LENGTH:
                raise KeyRefused(
                    f"{ref[:HINT_LENGTH]}… is not a whole key this database holds, and only "
                    f"the first {HINT_LENGTH} characters of a key are stored: give the whole "
                    f"key, or at most {HINT_LENGTH} characters as `drip keys list` shows them"
                )
            else:
                found = [r for r in conn.execute(query) if r.hint.startswith(ref)]
            if not found:
                raise KeyRefused(f"no key{_of(account)} starts with {ref!r} (`drip keys list`)")
            if len(found) > 1:  # never a guess, not even the one that is not revoked yet
                shown = ", ".join(f"{r.hint}… (id {r.seq}, {r.name})" for r in found)
                raise KeyRefused(
                    f"{len(found)} keys start with {ref!r}: {shown}; give the whole key, or its id"
                )
            info = KeyInfo(*found[0])
            if info.revoked_at is not None:
                return info, False
            if info.kind == "secret" and not force:
                others = conn.execute(
                    select(func.count()).where(
                        keys.c.account_id
                        == select(keys.c.account_id).where(keys.c.seq == info.id).scalar_subquery(),
                        keys.c.kind == "secret",
                        keys.c.revoked_at.is_(None),
                        keys.c.seq != info.id,
                    )
                ).scalar()
                if not others:
                    raise KeyRefused(
                        f"{info.hint}… is the last secret key of account {info.account!r}: "
                        "without it nothing can read that account's runs, usage or customers. "
                        "Create another first (`drip keys create`), or pass --force"
                    )
            at = now_iso()
            self._cache.clear()  # this process's workers: at once
            conn.execute(
                update(keys).where(keys.c.seq == info.id).values(revoked_at=at, revoked_by=by)
            )
        return KeyInfo(**{**info.__dict__, "revoked_at": at, "revoked_by": by}), True


def _of(account: str | None) -> str:
    return "" if account is None else f" of account {account!r}"
