"""The server's storage, by concern (SQLAlchemy Core over SQLite or PostgreSQL).

- ``database``: the engine and transactions; ``sqlite`` / ``postgres``: the dialect-only parts;
  ``bulk``: multi-row inserts; ``schema``: the tables; ``migrations``: Alembic revisions.
- ``refs``: scoped look-ups of what a request names, written once.
- one module per resource: ``customers``, ``workflows``, ``usage``, ``runs`` (writes),
  ``timeline`` (reads of runs), ``ingest`` (the SDK's batch endpoint).

Storage never builds HTTP answers; it returns wire models or plain results to ``routes``.
"""

from __future__ import annotations

from .database import Database

__all__ = ["Database"]
