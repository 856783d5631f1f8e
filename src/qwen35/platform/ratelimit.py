"""Per-key rate limits as pure arithmetic over a one-minute sliding window, and the headers that report them.

Owns: deciding whether one more request fits (requests/min, tokens/min, concurrent), when it would fit
(retry-after), and the OpenAI `x-ratelimit-*` / Anthropic `anthropic-ratelimit-*` header values. No database,
no clock: the caller passes the window's samples and `now_ms`. Imports nothing from qwen35 outside the platform.
Invariant: the window is exact (each admitted request is one sample with its own time), so a key never gets more
than its limit in any 60-second span, and retry-after is the moment the oldest blocking sample leaves the window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from qwen35.platform.keys import KeyLimits

WINDOW_MS = 60_000
# Concurrency has no known release time; clients are told to come back soon.
CONCURRENCY_RETRY_MS = 1_000


@dataclass(frozen=True)
class Sample:
    created_at_ms: int
    tokens: int


@dataclass(frozen=True)
class RateLimitStatus:
    """The state a response reports; None fields mean that dimension is unlimited (headers omitted)."""

    now_ms: int
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_ms: int = 0
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_ms: int = 0

    def openai_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.limit_requests is not None:
            headers["x-ratelimit-limit-requests"] = str(self.limit_requests)
            headers["x-ratelimit-remaining-requests"] = str(max(self.remaining_requests or 0, 0))
            headers["x-ratelimit-reset-requests"] = format_duration(self.reset_requests_ms)
        if self.limit_tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            headers["x-ratelimit-remaining-tokens"] = str(max(self.remaining_tokens or 0, 0))
            headers["x-ratelimit-reset-tokens"] = format_duration(self.reset_tokens_ms)
        return headers

    def anthropic_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.limit_requests is not None:
            headers["anthropic-ratelimit-requests-limit"] = str(self.limit_requests)
            headers["anthropic-ratelimit-requests-remaining"] = str(max(self.remaining_requests or 0, 0))
            headers["anthropic-ratelimit-requests-reset"] = _rfc3339(self.now_ms + self.reset_requests_ms)
        if self.limit_tokens is not None:
            headers["anthropic-ratelimit-tokens-limit"] = str(self.limit_tokens)
            headers["anthropic-ratelimit-tokens-remaining"] = str(max(self.remaining_tokens or 0, 0))
            headers["anthropic-ratelimit-tokens-reset"] = _rfc3339(self.now_ms + self.reset_tokens_ms)
        return headers


@dataclass(frozen=True)
class Verdict:
    status: RateLimitStatus
    exceeded: str | None = None  # "requests" | "tokens" | "concurrency" | None when admitted
    retry_after_ms: int = 0
    message: str = ""


def format_duration(ms: int) -> str:
    """OpenAI's reset format: '17ms', '1s', '1.5s', '6m0s'."""
    ms = max(ms, 0)
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        seconds = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
        return f"{seconds}s"
    minutes, rest = divmod(ms, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s"


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_after_header(ms: int) -> dict[str, str]:
    # Whole seconds, rounded up, at least 1: a 0 would make SDKs retry in a busy loop.
    return {"retry-after": str(max(1, math.ceil(ms / 1000))), "retry-after-ms": str(max(1, ms))}


@dataclass(frozen=True)
class WindowStats:
    """Aggregate of one key's samples inside the window (what the database sums for us)."""

    num_requests: int
    num_tokens: int
    oldest_ms: int | None


def window_stats(samples: Sequence[Sample], now_ms: int) -> WindowStats:
    inside = [s for s in samples if s.created_at_ms > now_ms - WINDOW_MS]
    return WindowStats(len(inside), sum(s.tokens for s in inside), min((s.created_at_ms for s in inside), default=None))


def evaluate(
    stats: WindowStats,
    now_ms: int,
    limits: KeyLimits,
    new_tokens: int,
    active_requests: int,
    load_samples: Callable[[], Sequence[Sample]],
) -> Verdict:
    """Would one more request of `new_tokens` fit? `load_samples` (the window's samples) is only called when a
    limit is exceeded, to compute retry-after: the common path needs nothing but the aggregates."""
    used_requests, used_tokens = stats.num_requests, stats.num_tokens
    rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute

    exceeded: str | None = None
    retry_ms = 0
    message = ""
    if limits.max_concurrent is not None and active_requests >= limits.max_concurrent:
        exceeded, retry_ms = "concurrency", CONCURRENCY_RETRY_MS
        message = f"Rate limit reached: {limits.max_concurrent} concurrent requests for this key."
    elif rpm is not None and used_requests + 1 > rpm:
        # The request fits once enough of the oldest samples have left the window.
        window = _sorted_window(load_samples(), now_ms)
        leaving = window[max(0, min(len(window) - rpm, len(window) - 1))] if window else None
        exceeded = "requests"
        retry_ms = (leaving.created_at_ms + WINDOW_MS - now_ms) if leaving else CONCURRENCY_RETRY_MS
        message = f"Rate limit reached for requests per minute (limit {rpm}). Try again in {format_duration(retry_ms)}."
    elif tpm is not None and used_tokens + new_tokens > tpm:
        exceeded = "tokens"
        if new_tokens > tpm:
            retry_ms = WINDOW_MS
            message = (
                f"Request too large: it may use {new_tokens} tokens and the limit is {tpm} tokens per minute. "
                "Lower max_tokens or shorten the input."
            )
        else:
            remaining = used_tokens
            for sample in _sorted_window(load_samples(), now_ms):
                remaining -= sample.tokens
                if remaining + new_tokens <= tpm:
                    retry_ms = sample.created_at_ms + WINDOW_MS - now_ms
                    break
            message = (
                f"Rate limit reached for tokens per minute (limit {tpm}, used {used_tokens}, requested "
                f"{new_tokens}). Try again in {format_duration(retry_ms)}."
            )
    admitted = exceeded is None
    after_requests = used_requests + (1 if admitted else 0)
    after_tokens = used_tokens + (new_tokens if admitted else 0)
    # Reset: when the oldest sample leaves the window (a fresh window resets a minute from now).
    if stats.oldest_ms is not None:
        reset_ms = stats.oldest_ms + WINDOW_MS - now_ms
    else:
        reset_ms = WINDOW_MS if admitted else 0
    status = RateLimitStatus(
        now_ms=now_ms,
        limit_requests=rpm,
        remaining_requests=None if rpm is None else rpm - after_requests,
        reset_requests_ms=reset_ms,
        limit_tokens=tpm,
        remaining_tokens=None if tpm is None else tpm - after_tokens,
        reset_tokens_ms=reset_ms,
    )
    if exceeded == "requests":
        status = _with(status, reset_requests_ms=retry_ms)
    elif exceeded == "tokens":
        status = _with(status, reset_tokens_ms=retry_ms)
    retry_after_ms = max(retry_ms, 1) if exceeded else 0
    return Verdict(status=status, exceeded=exceeded, retry_after_ms=retry_after_ms, message=message)


def _sorted_window(samples: Sequence[Sample], now_ms: int) -> list[Sample]:
    return sorted((s for s in samples if s.created_at_ms > now_ms - WINDOW_MS), key=lambda s: s.created_at_ms)


def _with(status: RateLimitStatus, **changes: int) -> RateLimitStatus:
    return replace(status, **changes)
