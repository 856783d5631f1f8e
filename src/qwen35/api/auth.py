"""API-key authentication for every /v1 route (OpenAI and Anthropic families alike).

Owns reading the secret (`x-api-key`, else `Authorization: Bearer`), asking the platform who it belongs to, and
throttling failed attempts per client address (api.auth_throttle, configured by ServerSettings'
`auth_max_failures` / `auth_failure_window_s`). Imports serving.errors, the platform's KeyInfo type and errors;
the platform object comes from app.state.
Invariant: a request reaches a handler only with `request.state.api_key` set to an active key; otherwise it gets
a 401 in its family's error format (rendered by api.errors) - a 429 with `retry-after` once its address failed
too often - or a 503 when the store cannot be asked (never a 500).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from qwen35.api.auth_throttle import throttle_of
from qwen35.platform.errors import StoreUnavailable
from qwen35.platform.keys import KeyInfo
from qwen35.serving.errors import AuthenticationError, RateLimitedError, UnavailableError

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY) or in an x-api-key header. Create one with `qwen35 keys create`."
)


def extract_secret(request: Request) -> str | None:
    """The presented secret; `x-api-key` wins when both are sent (as on Anthropic's API)."""
    api_key = request.headers.get("x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _masked(secret: str) -> str:
    return f"{secret[:6]}***{secret[-4:]}" if len(secret) > 12 else "***"


def client_address(request: Request) -> str:
    """The peer address (uvicorn resolves X-Forwarded-For only from its --forwarded-allow-ips proxies)."""
    return request.client.host if request.client is not None else "unknown"


def too_many_failures(retry_after_s: float) -> RateLimitedError:
    return RateLimitedError(
        f"Too many failed authentication attempts from your address; retry in {round(retry_after_s)} s.",
        code="too_many_failed_auth_attempts", retry_after_s=retry_after_s,
    )


async def lookup_key(request: Request, secret: str | None) -> KeyInfo | None:
    """The active key of `secret`, or None after counting a failure for the client's address; raises the 429 of
    the throttle once the address is over its limit, and UnavailableError (503) when the store cannot answer."""
    key = None
    if secret is not None:
        platform: Any = request.app.state.platform
        try:
            key = await platform.aauthenticate(secret)
        except StoreUnavailable as exc:
            raise UnavailableError("The key store is unavailable; retry shortly.", code="store_unavailable",
                                   retry_after_s=5.0) from exc
    if key is not None:
        return key
    wait = throttle_of(request.app.state).failed(client_address(request))
    if wait is not None:
        raise too_many_failures(wait)
    return None


async def require_api_key(request: Request) -> KeyInfo:
    """FastAPI dependency: the caller's active key, or AuthenticationError (401) / RateLimitedError (429)."""
    secret = extract_secret(request)
    key = await lookup_key(request, secret)
    if key is None:
        if secret is None:
            raise AuthenticationError(_MISSING, code=None)
        raise AuthenticationError(f"Incorrect API key provided: {_masked(secret)}.", code="invalid_api_key")
    request.state.api_key = key
    return key
