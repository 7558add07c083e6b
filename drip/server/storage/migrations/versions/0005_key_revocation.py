"""API keys can be revoked (``drip keys revoke``): when and by whom is stored on the key's row,
which stays (a revoked key is refused, not forgotten). A downgrade deletes the revoked keys' rows.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, String

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(Column("revoked_at", String(40), nullable=True))
        batch.add_column(Column("revoked_by", String(256), nullable=True))


def downgrade() -> None:
    # revision 0004 cannot store a revocation: a revoked key left there would be accepted
    # again, so its row goes (the key stays refused, as unknown; who revoked it and when is lost)
    op.get_bind().exec_driver_sql("DELETE FROM api_keys WHERE revoked_at IS NOT NULL")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
