"""API-key authentication for every /v1 route (OpenAI and Anthropic families alike).

Owns reading the secret (`x-api-key`, else `Authorization: Bearer`) and asking the platform who it belongs to.
Imports serving.errors and the platform's KeyInfo type only; the platform object comes from app.state.
Invariant: a request reaches a handler only with `request.state.api_key` set to an active key; otherwise it gets
a 401 in its family's error format (rendered by api.errors).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from qwen35.platform.keys import KeyInfo
from qwen35.serving.errors import AuthenticationError

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


async def require_api_key(request: Request) -> KeyInfo:
    """FastAPI dependency: the caller's active key, or AuthenticationError (401)."""
    secret = extract_secret(request)
    if secret is None:
        raise AuthenticationError(_MISSING, code=None)
    platform: Any = request.app.state.platform
    key = await platform.aauthenticate(secret)
    if key is None:
        raise AuthenticationError(f"Incorrect API key provided: {_masked(secret)}.", code="invalid_api_key")
    request.state.api_key = key
    return key
