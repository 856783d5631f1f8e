"""Alembic environment for the platform store.

Owns: running migrations on a connection handed over by `qwen35.platform.store` (config.attributes
["connection"]); there is no alembic.ini and no URL here. Imports nothing from qwen35.
Invariant: migrations run in one transaction that holds the database's write lock (SQLite BEGIN IMMEDIATE,
PostgreSQL advisory lock), so two processes opening a fresh store at once cannot both create the tables.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

_PG_MIGRATION_LOCK = 0x71776E3335  # arbitrary constant: "qwn35"

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("qwen35 platform migrations must be run through qwen35.platform.store")

context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    context.run_migrations()
