"""Metering at the HTTP edge: admit a request before any work, record its usage once whatever the ending.

Owns the bridge between the platform's Admission / usage ledger and the serving core's `Usage`, and the translation
of platform errors into the serving error taxonomy (so every family renders them). Imports platform (errors, types)
and serving; nothing from an API family. Invariant: every admitted call ends with exactly one `finish()`:
usage recorded (work was done, even partly - a stream cut off by the client included) or the hold released.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
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
    OverloadedError,
    RateLimitedError,
    ServingError,
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
        return OverloadedError("The billing store is unavailable; retry shortly.", code="store_unavailable")
    return InternalError("The billing store failed while handling your request.")


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
        """Record usage (any work done) or release the hold (none done). Never raises: billing problems are
        logged, the answer the client already has stands."""
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
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("failed to record usage of %s", request_id)
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
