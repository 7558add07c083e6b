"""Runs remember the public key that started them (``runs.started_by``): only that key may end
them (the scope table, ``drip.server.scopes``). NULL for runs a secret key started and for
every run made before this revision (those need a secret key to be ended).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, Integer

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", Column("started_by", Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("started_by")
