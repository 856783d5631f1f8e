"""Typed errors raised by the platform.

Owns: every exception the platform raises to its callers (the API layer maps them to HTTP statuses, the CLI to
exit codes). Imports nothing from qwen35. Invariant: bad input never surfaces as a bare ValueError, KeyError or
database exception - it becomes one of these classes with a message a user can act on.
"""

from __future__ import annotations

from collections.abc import Mapping


class PlatformError(Exception):
    """Base class of every platform error."""


class InvalidInput(PlatformError, ValueError):
    """An argument is malformed or out of range (bad name, negative tokens, unparsable amount...)."""


class NotFound(PlatformError, LookupError):
    """An account, key or document does not exist (or is not visible to the caller)."""


class Conflict(PlatformError):
    """The object already exists (account name taken...)."""


class StoreUnavailable(PlatformError):
    """The database cannot be reached or used (PostgreSQL down, SQLite file unwritable, lock timeout).

    HTTP: 503 - the request may be retried; nothing was charged by the failed call.
    """


class InsufficientCredits(PlatformError):
    """The account cannot pay for the worst case of the request being admitted.

    OpenAI family: 429 `insufficient_quota`; Anthropic: 400 `invalid_request_error` (credit balance too low).
    """

    def __init__(self, account_id: str, balance_nanos: int, held_nanos: int, required_nanos: int) -> None:
        self.account_id = account_id
        self.balance_nanos = balance_nanos
        self.held_nanos = held_nanos
        self.required_nanos = required_nanos
        available = (balance_nanos - held_nanos) / 1e9  # display only; money math stays integer
        super().__init__(
            f"Your credit balance is too low for this request: account {account_id!r} has "
            f"${available:.6f} available and the request may cost up to ${required_nanos / 1e9:.6f}. "
            "Add credits or lower max_tokens."
        )


class RateLimited(PlatformError):
    """A per-key limit (requests/min, tokens/min or concurrent requests) would be exceeded.

    `headers` are the OpenAI-style headers to send with the 429 (`retry-after`, `x-ratelimit-*`);
    `anthropic_headers` the Anthropic-style ones (`retry-after`, `anthropic-ratelimit-*`).
    """

    def __init__(
        self,
        limit: str,
        retry_after: float,
        headers: Mapping[str, str],
        anthropic_headers: Mapping[str, str],
        message: str,
    ) -> None:
        self.limit = limit  # "requests" | "tokens" | "concurrency"
        self.retry_after = retry_after
        self.headers = dict(headers)
        self.anthropic_headers = dict(anthropic_headers)
        super().__init__(message)
