"""One error taxonomy for the serving core; every API family maps it to its own status and body.

Owns the typed failures a generation can end in (bad input, context overflow, overload, auth, quota, internal).
Imports only engine.request (to translate engine errors); nothing from api/ or platform/.
Invariant: every exception that leaves `qwen35.serving` is a `ServingError`; `kind` alone decides the HTTP status
and body type at the edge, `param` names the offending request field where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from qwen35.engine.request import ContextLengthError, EngineDeadError, EngineError, EngineOverloadedError

ErrorKind = Literal[
    "invalid_request",
    "context_length_exceeded",
    "authentication",
    "permission",
    "not_found",
    "rate_limited",
    "insufficient_quota",
    "overloaded",
    "queue_full",
    "unavailable",
    "too_large",
    "timeout",
    "internal",
]


class ServingError(Exception):
    """Base of every failure the serving core reports. `retry_after_s` is a hint for 429/503 answers;
    `headers` are extra response headers per API family ("openai", "anthropic"), e.g. rate-limit state."""

    kind: ErrorKind = "internal"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        headers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.headers: dict[str, dict[str, str]] = {k: dict(v) for k, v in (headers or {}).items()}
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, param={self.param!r}, code={self.code!r})"


class InvalidRequestError(ServingError):
    kind: ErrorKind = "invalid_request"


class ContextLengthExceededError(InvalidRequestError):
    kind: ErrorKind = "context_length_exceeded"

    def __init__(self, message: str, *, param: str | None = "messages") -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


class AuthenticationError(ServingError):
    kind: ErrorKind = "authentication"


class PermissionDeniedError(ServingError):
    kind: ErrorKind = "permission"


class NotFoundError(ServingError):
    kind: ErrorKind = "not_found"


class RateLimitedError(ServingError):
    kind: ErrorKind = "rate_limited"


class InsufficientQuotaError(ServingError):
    kind: ErrorKind = "insufficient_quota"


class OverloadedError(ServingError):
    kind: ErrorKind = "overloaded"


class QueueFullError(ServingError):
    """The admission queue is full: retry later (OpenAI 429, Anthropic 529), unlike a store outage (503)."""

    kind: ErrorKind = "queue_full"


class UnavailableError(ServingError):
    """A dependency of the answer is down (the billing store): 503 on every API, retryable, nothing charged."""

    kind: ErrorKind = "unavailable"


class RequestTimeoutError(ServingError):
    """The request ran past the server's per-request time limit (504; what was generated is billed)."""

    kind: ErrorKind = "timeout"


class PayloadTooLargeError(InvalidRequestError):
    """The request body is larger than the server accepts (413 on every API)."""

    kind: ErrorKind = "too_large"


class InternalError(ServingError):
    kind: ErrorKind = "internal"


def from_engine_error(exc: BaseException) -> ServingError:
    """Translate an engine exception into the taxonomy (anything unknown is an internal error)."""
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, ContextLengthError):
        return ContextLengthExceededError(exc.message, param=exc.param)
    if isinstance(exc, EngineError):
        return InvalidRequestError(exc.message, param=exc.param, code=exc.code or "invalid_value")
    if isinstance(exc, EngineOverloadedError):
        return QueueFullError(str(exc) or "The server is overloaded; retry shortly.", code="engine_overloaded",
                              retry_after_s=1.0)
    if isinstance(exc, EngineDeadError):
        return OverloadedError(f"The model engine stopped ({exc}); the server is restarting, retry shortly.",
                               code="engine_unavailable", retry_after_s=5.0)
    return InternalError(f"Internal error during generation: {type(exc).__name__}")
