"""Table definitions (SQLAlchemy Core) the platform queries.

Owns: the current shape of every platform table. Migrations under platform/migrations/ create and evolve these
tables and never import this module (a migration must keep meaning what it meant when written); a test checks
that a migrated database matches this metadata. Imports nothing from qwen35.
Invariants: money columns are BigInteger nano-dollars; times are BigInteger epoch milliseconds (UTC), which
sort and subtract the same way on SQLite and PostgreSQL; `accounts.balance_nanos` equals the sum of that
account's `ledger_entries.amount_nanos` at every commit.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    # False: the account is metered and charged but never refused for credit (the operator's default account).
    Column("credit_limited", Boolean, nullable=False),
    Column("balance_nanos", BigInteger, nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.account_id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("prefix", String(32), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=True),
    Column("revoked_at_ms", BigInteger, nullable=True),
    Column("requests_per_minute", Integer, nullable=True),
    Column("tokens_per_minute", Integer, nullable=True),
    Column("max_concurrent", Integer, nullable=True),
    Index("ix_api_keys_account", "account_id"),
    Index("ix_api_keys_revoked", "revoked_at_ms"),  # servers poll recent revocations to end open streams
)

prices = Table(
    "prices",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("effective_at_ms", BigInteger, primary_key=True),
    Column("input_nanos_per_token", BigInteger, nullable=False),
    Column("cached_input_nanos_per_token", BigInteger, nullable=False),
    Column("output_nanos_per_token", BigInteger, nullable=False),
    Column("web_search_nanos_per_call", BigInteger, nullable=False),
)

# One row per admitted request: the credit hold, the concurrency slot while `state == 'active'`, and the
# sliding-window rate-limit sample (rows stay ~2 minutes after settling, then are pruned). States: active,
# settled (usage recorded), released (nothing to charge), orphaned (its owner process died: hold and slot freed).
admissions = Table(
    "admissions",
    metadata,
    Column("admission_id", String(40), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("hold_nanos", BigInteger, nullable=False),
    Column("rate_tokens", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("owner_id", String(40), nullable=True),  # server_instances.instance_id; NULL: no owner (TTL only)
    Index("ix_admissions_key_time", "key_id", "created_at_ms"),
    Index("ix_admissions_account_state", "account_id", "state"),
    Index("ix_admissions_time", "created_at_ms"),
    Index("ix_admissions_owner_state", "owner_id", "state"),
)

# One row per server process that admits requests: its heartbeat proves it alive (across hosts), and on one host
# its pid + process start time (in `host_key`'s boot and pid namespace) proves it dead at once after a kill -9.
server_instances = Table(
    "server_instances",
    metadata,
    Column("instance_id", String(40), primary_key=True),
    Column("host_key", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("proc_start", BigInteger, nullable=True),
    Column("state", String(16), nullable=False),  # alive | stopped | dead
    Column("started_at_ms", BigInteger, nullable=False),
    Column("heartbeat_at_ms", BigInteger, nullable=False),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cached_input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("web_search_calls", Integer, nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Index("ix_usage_account_time", "account_id", "created_at_ms"),
    Index("ix_usage_key_time", "key_id", "created_at_ms"),
)

# Every movement of a balance: credits added (kind 'credit') and request charges (kind 'usage', negative).
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("note", String(256), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Index("ix_ledger_account", "account_id", "entry_id"),
)

documents = Table(
    "documents",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("doc_id", String(128), primary_key=True),
    Column("owner_key_id", String(32), nullable=True),
    Column("account_id", String(64), nullable=True),
    Column("body", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_documents_owner", "kind", "owner_key_id", "created_at_ms"),
)
