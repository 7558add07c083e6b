"""API keys: creation, hashing, verification and what a public key may do.

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

from fastapi import Request
from sqlalchemy import select

from . import schema
from .clock import now_iso
from .db import Database
from .errors import ApiError

__all__ = ["KeyStore", "Principal", "authenticate", "require_secret"]

DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account (internal integer id) and the kind of key."""

    account_id: int
    public: bool


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Accounts and their keys."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, Principal] = {}
        self._cache_lock = threading.Lock()

    def create_key(self, account: str = DEFAULT_ACCOUNT, public: bool = False) -> str:
        """A new key for ``account`` (created if new); the only time the key is visible."""
        key = f"{'pk' if public else 'sk'}_local_{secrets.token_hex(24)}"
        with self._db.write() as conn:
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

    def bootstrap(self) -> tuple[str, str] | None:
        """On an empty database: the default account with one secret and one public key."""
        with self._db.read() as conn:
            if conn.execute(select(schema.accounts.c.seq).limit(1)).first() is not None:
                return None
        return self.create_key(DEFAULT_ACCOUNT), self.create_key(DEFAULT_ACCOUNT, public=True)

    def verify(self, key: str) -> Principal | None:
        """The principal of a key, or None when the key is unknown."""
        digest = hash_key(key)
        found = self._cache.get(digest)
        if found is not None:
            return found
        keys = schema.api_keys
        with self._db.read() as conn:
            row = conn.execute(
                select(keys.c.key_hash, keys.c.account_id, keys.c.kind).where(
                    keys.c.key_hash == digest
                )
            ).first()
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return None
        principal = Principal(account_id=row.account_id, public=row.kind == "public")
        with self._cache_lock:
            self._cache[digest] = principal
        return principal


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller of this request, from ``Authorization: Bearer <key>``."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _unauthorized("Missing API key: send 'Authorization: Bearer sk_…' (or pk_…)")
    if not key.startswith(("sk_", "pk_")):
        raise _unauthorized("Invalid API key: keys start with 'sk_' or 'pk_'")
    store: KeyStore = request.app.state.drip.keys
    principal = store.verify(key)
    if principal is None:
        raise _unauthorized("Invalid API key: this server does not know it")
    return principal


async def require_secret(request: Request) -> Principal:
    """FastAPI dependency for operations a public (``pk_``) key may not perform: 403."""
    principal = await authenticate(request)
    if principal.public:
        raise ApiError(
            403, "SECRET_KEY_REQUIRED", "This operation needs a secret key (sk_…), not a public key"
        )
    return principal
