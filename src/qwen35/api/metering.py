"""Metering at the HTTP edge: admit a request before any work, record its usage once whatever the ending.

Owns the bridge between the platform's Admission / usage ledger and the serving core's `Usage`, and the translation
of platform errors into the serving error taxonomy (so every family renders them). Imports platform (errors, types)
and serving; nothing from an API family. Invariant: every admitted call ends with exactly one `finish()`:
usage recorded (work was done, even partly - a stream cut off by the client included) or the hold released; an
answer whose record reached neither the store nor its journal is refused (`check_recorded`, fail closed), and a
request whose key is revoked while it runs ends at its next event (`check_key`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from qwen35.platform.errors import (
    Conflict,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PlatformError,
    RateLimited,
    StoreUnavailable,
)
from qwen35.platform.keys import KeyInfo
from qwen35.serving.errors import (
    AuthenticationError,
    InsufficientQuotaError,
    InternalError,
    InvalidRequestError,
    RateLimitedError,
    ServingError,
    UnavailableError,
)
from qwen35.serving.events import Usage

log = logging.getLogger(__name__)


def platform_error(exc: PlatformError) -> ServingError:
    """A platform refusal in the serving taxonomy (rate-limit headers kept per family)."""
    if isinstance(exc, RateLimited):
        return RateLimitedError(
            str(exc),
            code="rate_limit_exceeded",
            retry_after_s=exc.retry_after,
            headers={"openai": exc.headers, "anthropic": exc.anthropic_headers},
        )
    if isinstance(exc, InsufficientCredits):
        return InsufficientQuotaError(str(exc), code="insufficient_quota")
    if isinstance(exc, NotFound):
        return AuthenticationError(f"Your API key is no longer valid: {exc}", code="invalid_api_key")
    if isinstance(exc, (InvalidInput, Conflict)):
        return InvalidRequestError(str(exc))
    if isinstance(exc, StoreUnavailable):  # retryable and nothing was charged: 503, not 500
        return store_unavailable()
    return InternalError("The billing store failed while handling your request.")


STORE_RETRY_AFTER_S = 5.0


def store_unavailable() -> UnavailableError:
    return UnavailableError("The billing store is unavailable; retry shortly.", code="store_unavailable",
                            retry_after_s=STORE_RETRY_AFTER_S)


def key_revoked() -> AuthenticationError:
    return AuthenticationError("The API key of this request was revoked or expired while it ran.",
                               code="invalid_api_key")


@dataclass
class MeteredCall:
    """One admitted request; `finish` settles it exactly once."""

    platform: Any
    key: KeyInfo
    endpoint: str
    model: str
    admission: Any
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    unrecorded: ServingError | None = None  # set by finish() when the usage could be written nowhere

    def check_key(self) -> None:
        """Called for every serving event: a key revoked (as this process knows from memory, see
        platform.revocations) or expired since admission ends the request with an authentication error."""
        revoked = getattr(self.platform, "is_key_revoked", None)
        expires = self.key.expires_at
        if (revoked is not None and revoked(self.key.key_id)) or (
            expires is not None and datetime.now(UTC) >= expires
        ):
            raise key_revoked()

    def check_recorded(self) -> None:
        """Fail closed: raises (503, retryable) when the request's usage reached neither the store nor the journal,
        so the end of an answer is never sent without its ledger record."""
        if self.unrecorded is not None:
            raise self.unrecorded

    def response_headers(self, family: str = "openai") -> dict[str, str]:
        """Rate-limit state to send with a successful answer."""
        if self.admission is None:
            return {}
        return dict(self.admission.anthropic_headers() if family == "anthropic" else self.admission.openai_headers())

    async def admit_search(self) -> str | None:
        """Asked before each web search (`serving.search_loop.SearchGate`): None when the account covers its fee
        (now held), "insufficient_credits" when it does not; a store failure refuses the search too."""
        if self.admission is None:
            return None
        try:
            allowed = await self.platform.ahold_web_search(self.admission)
        except Exception:  # noqa: BLE001 - no search is better than an unpaid one
            log.exception("failed to hold a web search fee")
            return "insufficient_credits"
        return None if allowed else "insufficient_credits"

    async def finish(self, request_id: str, usage: Usage | None, status: str = "completed") -> Any:
        """Record usage (any work done) or release the hold (none done). Never raises: when the record could be
        written nowhere (store and journal both refused) it sets `unrecorded` - the lifecycle then refuses the
        answer (`check_recorded`) - and the hold is released once the store is back, as nothing was delivered."""
        if self.done:
            return None
        self.done = True
        try:
            if usage is None:  # refused before the engine did any work
                await self.platform.arelease(self.admission)
                return None
            return await self.platform.arecord_usage(
                request_id,
                self.admission,
                self.endpoint,
                self.model,
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens,
                reasoning_tokens=min(usage.reasoning_tokens, usage.output_tokens),
                web_search_calls=usage.web_search_calls,
                latency_ms=int((time.monotonic() - self.started) * 1000),
                status=status,
            )
        except Exception as exc:  # noqa: BLE001 - see docstring
            log.error("failed to record usage of %s: %s", request_id, exc)
            if usage is not None:
                self.unrecorded = platform_error(exc) if isinstance(exc, PlatformError) else store_unavailable()
                defer = getattr(self.platform, "defer_release", None)
                if defer is not None and self.admission is not None:
                    defer(self.admission)
            return None


async def admit(
    platform: Any,
    key: KeyInfo,
    endpoint: str,
    model: str,
    num_input_tokens: int,
    max_output_tokens: int,
) -> MeteredCall:
    """Admission before any work: raises ServingError (429 rate limit / insufficient quota) when refused."""
    try:
        admission = await platform.aadmit(key, endpoint, model, num_input_tokens, max_output_tokens)
    except PlatformError as exc:
        raise platform_error(exc) from exc
    return MeteredCall(platform=platform, key=key, endpoint=endpoint, model=model, admission=admission)
