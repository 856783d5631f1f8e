"""Owner liveness of admissions: server instances with a heartbeat, and the owner of each admission.

An admission (credit hold + concurrency slot) made by a server process carries that process's `owner_id`; a
process that dies (kill -9, OOM, host lost) stops heartbeating and its holds are released by the next process
that notices (at its start-up, or on its own heartbeat), instead of after the hold TTL. Also indexes the keys'
revocation time, which every server polls to end a revoked key's open streams.

Revision ID: 0003_liveness
Revises: 0002_documents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_liveness"
down_revision = "0002_documents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_instances",
        sa.Column("instance_id", sa.String(40), primary_key=True),
        sa.Column("host_key", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("proc_start", sa.BigInteger, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at_ms", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("admissions") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(40), nullable=True))
    op.create_index("ix_admissions_owner_state", "admissions", ["owner_id", "state"])
    op.create_index("ix_api_keys_revoked", "api_keys", ["revoked_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_revoked", "api_keys")
    op.drop_index("ix_admissions_owner_state", "admissions")
    with op.batch_alter_table("admissions") as batch:
        batch.drop_column("owner_id")
    op.drop_table("server_instances")
