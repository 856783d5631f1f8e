"""Anthropic error rendering: the serving error taxonomy -> Anthropic status, headers and body.

Owns `{"type":"error","error":{"type","message"},"request_id"}` bodies, the `request-id` header, the Anthropic
status table (529 overloaded, 400 for an empty credit balance), pydantic validation errors in Anthropic's
"field.path: message" style, and the in-stream `event: error` payload. Imports serving errors, api.errors
(shared retry advice) and this package's protocol types; never the OpenAI family.
Invariant: every failure on an Anthropic path leaves in this envelope, never FastAPI's `{"detail": ...}` or a 422.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from qwen35.api.anthropic.protocol_response import ErrorDetail, ErrorEvent
from qwen35.api.edge import ModelNotFoundError
from qwen35.api.errors import mark_error, retry_headers
from qwen35.serving.errors import InvalidRequestError, ServingError

ANTHROPIC_STATUS: Mapping[str, int] = {
    "invalid_request": 400,
    "context_length_exceeded": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "rate_limited": 429,
    "insufficient_quota": 400,  # Anthropic reports an empty balance as a 400, not OpenAI's 429
    "overloaded": 529,
    "queue_full": 529,
    "unavailable": 503,  # Anthropic's own 503 is an api_error (the SDK's ServiceUnavailableError)
    "too_large": 413,
    "timeout": 504,
    "internal": 500,
}
ANTHROPIC_TYPE: Mapping[str, str] = {
    "invalid_request": "invalid_request_error",
    "context_length_exceeded": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "rate_limited": "rate_limit_error",
    "insufficient_quota": "invalid_request_error",
    "overloaded": "overloaded_error",
    "queue_full": "overloaded_error",
    "unavailable": "api_error",
    "too_large": "request_too_large",
    "timeout": "timeout_error",
    "internal": "api_error",
}
CREDIT_BALANCE_MESSAGE = (
    "Your credit balance is too low to access the API. Please go to Plans & Billing to upgrade or purchase credits."
)


def request_id_of(request: Request | None) -> str:
    """The id the app's middleware assigned (shared with logs and usage), else a fresh Anthropic-style one."""
    state = getattr(request, "state", None)
    existing = getattr(state, "request_id", None) if state is not None else None
    if existing:
        return str(existing)
    fresh = f"req_{secrets.token_hex(12)}"
    if state is not None:
        state.request_id = fresh
    return fresh


def _message(exc: ServingError) -> str:
    if isinstance(exc, ModelNotFoundError):
        return f"model: {exc.name}"  # Anthropic's own wording
    if exc.kind == "insufficient_quota":
        return CREDIT_BALANCE_MESSAGE
    if exc.kind in ("overloaded", "queue_full"):
        return "Overloaded"
    if exc.param and exc.kind in ("invalid_request", "context_length_exceeded") and not exc.message.startswith(
        f"{exc.param}:"
    ):
        return f"{exc.param}: {exc.message}"  # Anthropic's "field.path: message" wording
    return exc.message


def error_event(exc: ServingError, request_id: str | None = None) -> ErrorEvent:
    return ErrorEvent(error=ErrorDetail(type=ANTHROPIC_TYPE[exc.kind], message=_message(exc)), request_id=request_id)


def _headers(exc: ServingError) -> dict[str, str]:
    # retry advice plus this family's own extras (the platform's `anthropic-ratelimit-*` on a 429); the OpenAI
    # family's `x-ratelimit-*` set on the same error never leaks onto an Anthropic answer
    return retry_headers(exc, "anthropic")


def anthropic_error_response(request: Request | None, exc: ServingError) -> Response:
    """The app-wide renderer for Anthropic paths (registered with api.errors' ErrorFamilies)."""
    mark_error(request, exc)
    request_id = request_id_of(request)
    headers = _headers(exc)
    headers["request-id"] = request_id
    body = error_event(exc, request_id).to_wire()
    return JSONResponse(body, status_code=ANTHROPIC_STATUS[exc.kind], headers=headers)


def _loc(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for part in loc:
        if part == "body":
            continue
        text = str(part)
        # pydantic adds union-member and tag names ("str", "list[...]", "text") to locations: not field names
        if isinstance(part, str) and (part in ("str", "int", "float", "bool", "dict", "list") or "[" in text):
            continue
        parts.append(text)
    return ".".join(parts)


def invalid_body(errors: Sequence[Mapping[str, Any]]) -> InvalidRequestError:
    """The first pydantic error as Anthropic words it: `messages.0.content: Field required`."""
    if not errors:
        return InvalidRequestError("Invalid request body")
    # A union (str | blocks) reports one error per member; the deepest location is the one that explains.
    first = max(errors, key=lambda error: len(_loc(error.get("loc", ())).split(".")))
    path = _loc(first.get("loc", ()))
    kind = first.get("type", "")
    message = str(first.get("msg", "invalid value"))
    if kind == "json_invalid":
        return InvalidRequestError("The request body is not valid JSON.")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "union_tag_invalid":
        ctx = first.get("ctx") or {}
        message = f"Input tag '{ctx.get('tag')}' is not one of the supported types ({ctx.get('expected_tags')})"
    return InvalidRequestError(f"{path}: {message}" if path else message, param=path or None)
