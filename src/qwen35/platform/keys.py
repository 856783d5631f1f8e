"""API key values: the KeyInfo record callers see, and how secrets are made, parsed and hashed.

Owns: the secret format `sk-q35-<12 hex public id><43 url-safe chars>`, its SHA-256 hash (the only thing stored),
and the constant-time comparison. Imports nothing from qwen35 and no database code.
Invariant: a secret is never stored, logged or put in a repr; only its public prefix is shown after creation.
Secrets carry 256 random bits, so a fast hash is enough (no password stretching needed); the public id in the
secret lets the store find the row by primary key and then compare hashes with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from qwen35.platform.errors import InvalidInput

SECRET_PREFIX = "sk-q35-"
_PUBLIC_ID_HEX = 12
_SECRET_RE = re.compile(r"^sk-q35-([0-9a-f]{12})([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")

_LIMIT_MAX = 2**31 - 1  # the limit columns are 32-bit integers on every backend
ROLE_USER = "user"
ROLE_ADMIN = "admin"


@dataclass(frozen=True)
class KeyLimits:
    """Per-key limits; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _LIMIT_MAX
            ):
                raise InvalidInput(f"{name} must be an integer in 1..{_LIMIT_MAX} or None, got {value!r}")


@dataclass(frozen=True)
class KeyInfo:
    """What an authenticated request knows about its key. Never holds the secret."""

    key_id: str
    account_id: str
    name: str
    prefix: str
    role: str
    limits: KeyLimits = field(default_factory=KeyLimits)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    def is_active(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class NewSecret:
    key_id: str
    prefix: str
    secret: str = field(repr=False)
    secret_hash: bytes = field(repr=False)


def new_secret() -> NewSecret:
    public_id = secrets.token_hex(_PUBLIC_ID_HEX // 2)
    secret = SECRET_PREFIX + public_id + secrets.token_urlsafe(32)
    return NewSecret(
        key_id=key_id_for(public_id), prefix=SECRET_PREFIX + public_id, secret=secret, secret_hash=hash_secret(secret)
    )


def key_id_for(public_id: str) -> str:
    return "key_" + public_id


def parse_key_id(secret: str) -> str | None:
    """The key id a well-formed secret claims, or None when it cannot be one of ours."""
    match = _SECRET_RE.match(secret)
    return key_id_for(match.group(1)) if match else None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), bytes(stored_hash))


def validate_key_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or not name.strip():
        raise InvalidInput("key name must be 1-128 printable characters")
    return name


def validate_role(role: str) -> str:
    if role not in (ROLE_USER, ROLE_ADMIN):
        raise InvalidInput(f"role must be {ROLE_USER!r} or {ROLE_ADMIN!r}, got {role!r}")
    return role


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)
