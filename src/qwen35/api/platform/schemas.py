"""Wire shapes of the platform dashboard API: request bodies (pydantic) and JSON renderings of platform values.

Owns: how keys, accounts, usage records and prices look on the wire. Imports qwen35.platform (values only) and
pydantic; nothing from serving or another API family.
Invariant: money is sent as decimal strings in USD (exact, like OpenRouter's pricing strings) except `cost` on
usage records, which is also given as a number for convenience; secrets appear only in the create-key answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qwen35.platform import AccountInfo, KeyInfo, PriceCard, UsageRecord, nanos_to_usd


class CreateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    expires_at: int | None = Field(default=None, description="unix seconds; omitted: never expires")
    account: str | None = Field(default=None, description="admin only: create the key in another account")
    admin: bool = Field(default=False, description="admin only: create an admin key")
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)


class CreateAccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1, max_length=64)
    credit_limited: bool = True


class AddCreditsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1, max_length=64)
    # A string so that no float ever carries money ("10", "0.25").
    amount_usd: str = Field(min_length=1, max_length=32)
    note: str | None = Field(default=None, max_length=256)


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.astimezone(UTC).timestamp())


def _usd(nanos: int) -> str:
    return f"{nanos_to_usd(nanos):f}"


def key_json(key: KeyInfo) -> dict[str, Any]:
    return {
        "object": "api_key",
        "id": key.key_id,
        "name": key.name,
        "prefix": key.prefix,
        "account": key.account_id,
        "role": key.role,
        "created_at": _unix(key.created_at),
        "expires_at": _unix(key.expires_at),
        "revoked_at": _unix(key.revoked_at),
        "status": "revoked" if key.revoked_at else "active",
        "limits": {
            "requests_per_minute": key.limits.requests_per_minute,
            "tokens_per_minute": key.limits.tokens_per_minute,
            "max_concurrent": key.limits.max_concurrent,
        },
    }


def account_json(account: AccountInfo) -> dict[str, Any]:
    return {
        "object": "account",
        "id": account.account_id,
        "balance_usd": _usd(account.balance_nanos),
        "held_usd": _usd(account.held_nanos),
        "available_usd": _usd(account.available_nanos),
        "credit_limited": account.credit_limited,
        "is_default": account.is_default,
        "created_at": _unix(account.created_at),
    }


def usage_json(record: UsageRecord) -> dict[str, Any]:
    return {
        "object": "usage_record",
        "request_id": record.request_id,
        "created_at": _unix(record.created_at),
        "account": record.account_id,
        "key_id": record.key_id,
        "endpoint": record.endpoint,
        "model": record.model,
        "input_tokens": record.input_tokens,
        "cached_input_tokens": record.cached_input_tokens,
        "output_tokens": record.output_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "web_search_calls": record.web_search_calls,
        "cost_usd": f"{record.cost:f}",
        "cost": float(record.cost),  # display convenience only; the ledger keeps the exact integer
        "latency_ms": record.latency_ms,
        "status": record.status,
    }


def price_json(card: PriceCard) -> dict[str, Any]:
    usd = card.as_usd()
    return {
        "object": "price",
        "model": card.model,
        "currency": "USD",
        "input_per_million": f"{usd['input_per_million']:f}",
        "cached_input_per_million": f"{usd['cached_input_per_million']:f}",
        "output_per_million": f"{usd['output_per_million']:f}",
        "web_search_per_call": f"{usd['web_search_per_call']:f}",
        "effective_at": card.effective_at_ms // 1000,
    }
