"""API keys: creation, hashing and verification (what each kind may do: ``scopes``).

A key is ``sk_local_<48 hex>`` (secret) or ``pk_local_<48 hex>`` (public). Only its SHA-256 is
stored; a presented key is hashed, looked up by hash and compared in constant time. Verified
keys are cached in memory (keys are never revoked by this server, so the cache cannot go stale).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from sqlalchemy import Connection, select

from .clock import now_iso
from .storage import schema
from .storage.bulk import lock_names
from .storage.database import Database

__all__ = ["DEFAULT_ACCOUNT", "KeyStore", "Principal", "hash_key"]

DEFAULT_ACCOUNT = "default"


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
            hint=key[:12],
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

    @property
    def owner(self) -> int | None:
        """The id runs started by this caller are owned by (public keys only)."""
        return self.key_id if self.public else None


def hash_key(key: str) -> str:
    """The stored form of a key (SHA-256, hex)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Accounts and their keys."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, Principal] = {}
        self._cache_lock = threading.Lock()

    def create_key(self, account: str = DEFAULT_ACCOUNT, public: bool = False) -> str:
        """A new key for ``account`` (created if new); the only time the key is visible."""
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
        """The principal of a key, or None when the key is unknown."""
        digest = hash_key(key)
        found = self._cache.get(digest)
        if found is not None:
            return found
        keys = schema.api_keys
        with self._db.read() as conn:
            row = conn.execute(
                select(keys.c.key_hash, keys.c.account_id, keys.c.kind, keys.c.seq).where(
                    keys.c.key_hash == digest
                )
            ).first()
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return None
        principal = Principal(
            account_id=row.account_id, public=row.kind == "public", key_id=row.seq
        )
        with self._cache_lock:
            self._cache[digest] = principal
        return principal
