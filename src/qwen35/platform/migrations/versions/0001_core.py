"""Core platform tables: accounts, API keys, rate card, admissions, usage records, ledger.

Seeds the operator's default account (not credit-limited) and the seed's rate card for every model ("*").

Revision ID: 0001_core
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    accounts = op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("credit_limited", sa.Boolean, nullable=False),
        sa.Column("balance_nanos", sa.BigInteger, nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=True),
        sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
        sa.Column("requests_per_minute", sa.Integer, nullable=True),
        sa.Column("tokens_per_minute", sa.Integer, nullable=True),
        sa.Column("max_concurrent", sa.Integer, nullable=True),
    )
    op.create_index("ix_api_keys_account", "api_keys", ["account_id"])
    prices = op.create_table(
        "prices",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("effective_at_ms", sa.BigInteger, primary_key=True),
        sa.Column("input_nanos_per_token", sa.BigInteger, nullable=False),
        sa.Column("cached_input_nanos_per_token", sa.BigInteger, nullable=False),
        sa.Column("output_nanos_per_token", sa.BigInteger, nullable=False),
        sa.Column("web_search_nanos_per_call", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "admissions",
        sa.Column("admission_id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("hold_nanos", sa.BigInteger, nullable=False),
        sa.Column("rate_tokens", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_admissions_key_time", "admissions", ["key_id", "created_at_ms"])
    op.create_index("ix_admissions_account_state", "admissions", ["account_id", "state"])
    op.create_index("ix_admissions_time", "admissions", ["created_at_ms"])
    op.create_table(
        "usage_records",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
        sa.Column("web_search_calls", sa.Integer, nullable=False),
        sa.Column("cost_nanos", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_account_time", "usage_records", ["account_id", "created_at_ms"])
    op.create_index("ix_usage_key_time", "usage_records", ["key_id", "created_at_ms"])
    op.create_table(
        "ledger_entries",
        sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("note", sa.String(256), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ledger_account", "ledger_entries", ["account_id", "entry_id"])
    # Seed data, written literally so this migration keeps meaning the same thing forever.
    op.bulk_insert(
        accounts,
        [
            {
                "account_id": "default",
                "credit_limited": False,
                "balance_nanos": 0,
                "is_default": True,
                "created_at_ms": 0,
            }
        ],
    )
    # input $0.04/M = 40 nano$/token, cached $0.02/M = 20, output $0.07/M = 70, web search $0.013 = 13e6 nano$.
    op.bulk_insert(
        prices,
        [
            {
                "model": "*",
                "effective_at_ms": 0,
                "input_nanos_per_token": 40,
                "cached_input_nanos_per_token": 20,
                "output_nanos_per_token": 70,
                "web_search_nanos_per_call": 13_000_000,
            }
        ],
    )


def downgrade() -> None:
    for table in ("ledger_entries", "usage_records", "admissions", "prices", "api_keys", "accounts"):
        op.drop_table(table)
