"""HTTP error mapping: the serving error taxonomy -> status, headers and body, per API family.

Owns the OpenAI error envelope, the app-wide exception handlers (validation, unknown routes, crashes) and the
registry that lets another family (Anthropic) render errors for its own paths. Imports serving.errors and
FastAPI/Starlette; nothing from platform/ (platform errors are translated in api.metering).
Invariant: no response ever carries a framework-default body (`{"detail": ...}`) or a 422; every error body is the
family's envelope with the right status, and a retry is advised only where one can help.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from qwen35.serving.errors import (
    InternalError,
    InvalidRequestError,
    NotFoundError,
    ServingError,
)

log = logging.getLogger(__name__)

ErrorRenderer = Callable[[Request, ServingError], Response]

OPENAI_STATUS: Mapping[str, int] = {
    "invalid_request": 400,
    "context_length_exceeded": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "rate_limited": 429,
    "insufficient_quota": 429,
    "overloaded": 503,
    "queue_full": 429,  # the admission queue is full: a rate limit on the whole server, retried by the SDKs
    "unavailable": 503,
    "timeout": 504,  # the billing store is down: retryable, nothing charged
    "too_large": 413,
    "internal": 500,
}
_OPENAI_TYPE: Mapping[str, str] = {
    "invalid_request": "invalid_request_error",
    "context_length_exceeded": "invalid_request_error",
    "authentication": "invalid_request_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "rate_limited": "requests",
    "insufficient_quota": "insufficient_quota",
    "overloaded": "server_error",
    "queue_full": "server_error",
    "unavailable": "server_error",
    "timeout": "server_error",
    "too_large": "invalid_request_error",
    "internal": "server_error",
}
_DEFAULT_CODE: Mapping[str, str | None] = {  # authentication: null when no key was sent, as OpenAI does
    "rate_limited": "rate_limit_exceeded",
    "insufficient_quota": "insufficient_quota",
    "overloaded": "overloaded",
    "queue_full": "engine_overloaded",
    "unavailable": "service_unavailable",
    "timeout": "request_timeout",
    "too_large": "request_too_large",
}


def openai_error_body(exc: ServingError) -> dict[str, Any]:
    """`{"error": {message, type, param, code}}`: all four keys, always (spec-required)."""
    return {
        "error": {
            "message": exc.message,
            "type": _OPENAI_TYPE[exc.kind],
            "param": exc.param,
            "code": exc.code if exc.code is not None else _DEFAULT_CODE.get(exc.kind),
        }
    }


def retry_headers(exc: ServingError, family: str = "openai") -> dict[str, str]:
    """Retry advice shared by both families: retry only rate limits and overload, with the hinted delay."""
    headers: dict[str, str] = {}
    if exc.kind in ("rate_limited", "overloaded", "queue_full", "unavailable"):
        delay = exc.retry_after_s if exc.retry_after_s is not None else 1.0
        headers["retry-after"] = str(max(1, round(delay)))
        headers["retry-after-ms"] = str(max(0, int(delay * 1000)))
        headers["x-should-retry"] = "true"
    else:
        headers["x-should-retry"] = "false"  # a deterministic failure: retrying only triples the work
    headers.update(exc.headers.get(family, {}))
    return headers


def mark_error(request: Request | None, exc: ServingError) -> None:
    """Tell the metrics middleware what kind of error this answer is (a bounded label)."""
    if request is not None:
        request.state.error_type = exc.kind


def openai_error_response(request: Request | None, exc: ServingError) -> JSONResponse:
    mark_error(request, exc)
    headers = retry_headers(exc)
    request_id = getattr(getattr(request, "state", None), "request_id", None) if request is not None else None
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse(openai_error_body(exc), status_code=OPENAI_STATUS[exc.kind], headers=headers)


def param_from_loc(loc: Sequence[Any], body: Any = None) -> str | None:
    """Pydantic error location -> OpenAI-style param: ("body", "messages", 0, "user", "content") ->
    "messages[0].content". Walking the request body tells field names from union tags pydantic inserts."""
    out = ""
    node = body
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and -len(node) <= part < len(node) else None
            continue
        if not isinstance(part, str):
            continue
        if isinstance(node, dict) and part not in node and part in (node.get("role"), node.get("type")):
            continue  # discriminated-union tag, not a field
        if node is None and _is_union_tag(part):
            continue
        if isinstance(node, (str, int, float, bool, list)) and _is_union_tag(part):
            continue  # "str" / "list[...]" members of a plain union
        out += f".{part}" if out else part
        node = node.get(part) if isinstance(node, dict) else None
    return out or None


def _is_union_tag(part: str) -> bool:
    # pydantic names plain-union members in locations ("str", "list[...]", "function-after[...]")
    return part in ("str", "int", "float", "bool", "dict", "list") or "[" in part or part.endswith("]")


def validation_error(errors: Sequence[Mapping[str, Any]], body: Any = None) -> InvalidRequestError:
    """The first pydantic error as a 400 that names the parameter."""
    if not errors:
        return InvalidRequestError("Invalid request body")
    first = errors[0]
    param = param_from_loc(first.get("loc", ()), body)
    kind = first.get("type", "")
    message = str(first.get("msg", "invalid value"))
    if kind == "json_invalid":
        return InvalidRequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload.)",
            code="invalid_json",
        )
    if kind == "missing":
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind == "extra_forbidden":
        return InvalidRequestError(f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return InvalidRequestError(f"Invalid value for '{param}': {message}", param=param, code="invalid_value")


class ErrorFamilies:
    """Path prefix -> renderer. The longest matching prefix wins; OpenAI's envelope is the default."""

    def __init__(self) -> None:
        self._renderers: list[tuple[str, ErrorRenderer]] = []

    def register(self, prefix: str, renderer: ErrorRenderer) -> None:
        self._renderers.append((prefix, renderer))
        self._renderers.sort(key=lambda item: -len(item[0]))

    def render(self, request: Request, exc: ServingError) -> Response:
        for prefix, renderer in self._renderers:
            if request.url.path.startswith(prefix):
                return renderer(request, exc)
        return openai_error_response(request, exc)


def install_error_handlers(app: FastAPI) -> ErrorFamilies:
    """Route every failure through the family renderers; returns the registry for other families to join."""
    families = ErrorFamilies()
    app.state.error_families = families

    async def on_serving_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServingError)
        return families.render(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, (RequestValidationError, ValidationError)) else []
        return families.render(request, validation_error(errors, getattr(exc, "body", None)))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status == 404:
            error: ServingError = NotFoundError(f"Invalid URL ({request.method} {request.url.path})")
        elif status == 405:
            error = InvalidRequestError(f"Method not allowed ({request.method} {request.url.path})")
            response = families.render(request, error)
            response.status_code = 405
            return response
        elif status < 500:
            error = InvalidRequestError(str(getattr(exc, "detail", "Bad request")))
        else:
            error = InternalError(str(getattr(exc, "detail", "Internal server error")))
        return families.render(request, error)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return families.render(request, InternalError("The server had an error while processing your request."))

    app.add_exception_handler(ServingError, on_serving_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_crash)
    return families
