"""qwen35.platform: accounts, API keys (hashed), credits, the rate card, admission and rate limits, the usage
ledger, and a small JSON document store, over SQLAlchemy (SQLite WAL by default, PostgreSQL for several servers).

Imports no other qwen35 package (see DESIGN.md). Entry point: `Platform.open(data_dir=..., database_url=...)`.
"""

from qwen35.platform.accounts import DEFAULT_ACCOUNT, AccountInfo
from qwen35.platform.documents import DocumentStore, StoredDocument
from qwen35.platform.errors import (
    Conflict,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PlatformError,
    RateLimited,
    StoreUnavailable,
)
from qwen35.platform.keys import KeyInfo, KeyLimits
from qwen35.platform.metering import Admission, UsageRecord
from qwen35.platform.money import SEED_PRICES, PriceCard, compute_cost, nanos_to_usd, usd_to_nanos
from qwen35.platform.platform import Platform
from qwen35.platform.ratelimit import RateLimitStatus
from qwen35.platform.usage_stats import BUCKETS_MS, UsageBucket

__all__ = [
    "BUCKETS_MS",
    "DEFAULT_ACCOUNT",
    "AccountInfo",
    "Admission",
    "Conflict",
    "DocumentStore",
    "InsufficientCredits",
    "InvalidInput",
    "KeyInfo",
    "KeyLimits",
    "NotFound",
    "Platform",
    "PlatformError",
    "PriceCard",
    "RateLimitStatus",
    "RateLimited",
    "SEED_PRICES",
    "StoreUnavailable",
    "StoredDocument",
    "UsageBucket",
    "UsageRecord",
    "compute_cost",
    "nanos_to_usd",
    "usd_to_nanos",
]
