"""Usage over time: the ledger's usage records summed into fixed-width time buckets (hour, day) for the dashboard.

Owns one grouped query over `usage_records`. Imports nothing from qwen35 outside the platform.
Invariant: buckets are aligned on multiples of the bucket width since the epoch (UTC), so an hour bucket starts at
a full hour and a day bucket at 00:00 UTC; the sum of every bucket equals the sum of the records it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from qwen35.platform import schema
from qwen35.platform.errors import InvalidInput

BUCKETS_MS = {"hour": 3_600_000, "day": 86_400_000}
MAX_BUCKETS = 2000  # a page of the chart; wider ranges are asked for in pieces


@dataclass(frozen=True)
class UsageBucket:
    start_ms: int
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanos: int


def usage_buckets(
    conn: Connection, bucket: str, since_ms: int, until_ms: int, account: str | None = None, key_id: str | None = None
) -> list[UsageBucket]:
    """Non-empty buckets in [since_ms, until_ms), oldest first (empty buckets are the caller's to fill)."""
    width = BUCKETS_MS.get(bucket)
    if width is None:
        raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS_MS)}")
    if until_ms <= since_ms or (until_ms - since_ms) // width > MAX_BUCKETS:
        raise InvalidInput(f"the range must be positive and span at most {MAX_BUCKETS} buckets")
    u = schema.usage_records
    # Integer division of two integers is integer division on SQLite and PostgreSQL alike (SQLAlchemy's `//`).
    start = (u.c.created_at_ms // width) * width
    query = (
        select(
            start.label("start"), func.count(), func.sum(u.c.input_tokens), func.sum(u.c.cached_input_tokens),
            func.sum(u.c.output_tokens), func.sum(u.c.reasoning_tokens), func.sum(u.c.cost_nanos),
        )
        .where(u.c.created_at_ms >= since_ms, u.c.created_at_ms < until_ms)
        .group_by(start)
        .order_by(start)
    )
    if account is not None:
        query = query.where(u.c.account_id == account)
    if key_id is not None:
        query = query.where(u.c.key_id == key_id)
    return [UsageBucket(*(int(v or 0) for v in row)) for row in conn.execute(query).all()]
