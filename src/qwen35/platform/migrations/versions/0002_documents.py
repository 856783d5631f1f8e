"""Generic JSON document store (stored responses and the like), scoped to an owner key.

Revision ID: 0002_documents
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_documents"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("doc_id", sa.String(128), primary_key=True),
        sa.Column("owner_key_id", sa.String(32), nullable=True),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_documents_owner", "documents", ["kind", "owner_key_id", "created_at_ms"])


def downgrade() -> None:
    op.drop_table("documents")
