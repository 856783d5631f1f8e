"""Anthropic Messages routes: `POST /v1/messages` (stream and not) and `POST /v1/messages/count_tokens`.

Owns the request life on Anthropic paths: auth (the app's `require_api_key`), the `anthropic-version` check, body
validation, model resolution, conversion to the serving core, admission and usage metering (`api.lifecycle`, the
same path as Chat Completions, so every API bills alike), and rendering. Imports api (auth, errors, lifecycle, sse),
serving and this package; never the OpenAI family (api.errors' OpenAI renderer is the shared default, not a family).
Invariant: every answer on these paths is Anthropic-shaped, errors included, and carries a `request-id` header;
an admitted call is settled (usage recorded or hold released) exactly once.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from qwen35.api.anthropic.convert import thinking_display, to_generation_request
from qwen35.api.anthropic.errors import anthropic_error_response, invalid_body, request_id_of
from qwen35.api.anthropic.protocol_request import CountTokensRequest, MessagesRequest
from qwen35.api.anthropic.protocol_response import MessageTokensCount
from qwen35.api.anthropic.render import GenerationFailed, MessageRenderer
from qwen35.api.anthropic.stream import message_stream
from qwen35.api.auth import require_api_key
from qwen35.api.errors import openai_error_response
from qwen35.api.lifecycle import ClientDisconnected, Started, start, until_disconnect
from qwen35.api.sse import SSEResponse
from qwen35.serving.errors import InternalError, InvalidRequestError, NotFoundError, ServingError
from qwen35.serving.events import Finished

router = APIRouter()
ENDPOINT = "messages"  # the usage ledger's endpoint label (chat completions use "chat.completions")

ANTHROPIC_PREFIX = "/v1/messages"
SUPPORTED_VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_Body = TypeVar("_Body", bound=BaseModel)


def install(app: Any) -> None:
    """Called by the app factory: errors on /v1/messages* (auth, 404, 405...) leave in Anthropic's envelope, and so
    do errors on /v1/models when the caller speaks Anthropic (sends `anthropic-version`)."""
    families = app.state.error_families
    families.register(ANTHROPIC_PREFIX, anthropic_error_response)

    def models_errors(request: Request, exc: ServingError) -> Response:
        if "anthropic-version" in request.headers:
            return anthropic_error_response(request, exc)
        return openai_error_response(request, exc)

    families.register("/v1/models", models_errors)


def _check_version(request: Request) -> None:
    version = request.headers.get("anthropic-version")
    if version is None:
        raise InvalidRequestError("anthropic-version: header is required", param="anthropic-version")
    # Known versions and any later dated one are served alike: the wire format we speak covers both eras.
    if version.strip() not in SUPPORTED_VERSIONS and not _VERSION_RE.match(version.strip()):
        raise InvalidRequestError(f"anthropic-version: invalid version '{version}'", param="anthropic-version")


async def _parse(request: Request, model: type[_Body]) -> _Body:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        raise InvalidRequestError("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_body(exc.errors()) from None


def _resolve_model(request: Request, name: str) -> str:
    """The canonical id (metering); the response echoes the caller's name, as Anthropic does."""
    model = request.app.state.settings.resolve_model(name)
    if model is None:
        raise NotFoundError(f"model: {name}")
    return str(model)


async def _prologue(request: Request, model: type[_Body]) -> tuple[Any, _Body, str]:
    """Auth, version, body, model: (key, body, canonical model id) or a ServingError."""
    key = await require_api_key(request)
    _check_version(request)
    body = await _parse(request, model)
    return key, body, _resolve_model(request, body.model)  # type: ignore[attr-defined]


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    try:
        _, body, _ = await _prologue(request, CountTokensRequest)
        count = request.app.state.core.count_prompt_tokens(to_generation_request(body, "count_tokens"))
    except ServingError as exc:
        return anthropic_error_response(request, exc)
    return JSONResponse(MessageTokensCount(input_tokens=count).to_wire())


@router.post("/v1/messages")
async def create_message(request: Request) -> Response:
    request_id = request_id_of(request)
    message_id = f"msg_{secrets.token_hex(12)}"
    try:
        key, body, model = await _prologue(request, MessagesRequest)
        generation_request = to_generation_request(body, message_id)
        started = await start(request, key, ENDPOINT, model, [generation_request], message_id)
    except ServingError as exc:
        return anthropic_error_response(request, exc)
    num_prompt_tokens = len(started.generations[0].prompt_token_ids)
    renderer = MessageRenderer(message_id, body.model, num_prompt_tokens, thinking_display=thinking_display(body))
    headers = started.call.response_headers("anthropic")
    if body.stream:
        return SSEResponse(message_stream(started, renderer, request_id), headers=headers)
    status = "cancelled"
    try:
        await until_disconnect(request, _collect(started, renderer))
        status = "completed"
    except ClientDisconnected:
        return Response(status_code=499)
    except GenerationFailed as exc:
        status = "failed"
        return anthropic_error_response(request, InternalError(exc.message))
    except ServingError as exc:
        status = "failed"
        return anthropic_error_response(request, exc)
    finally:
        await started.close(status)
    return JSONResponse(renderer.message().to_wire(), headers=headers)  # after close(): the usage has its cost


async def _collect(started: Started, renderer: MessageRenderer) -> None:
    async for _, event in started.events():
        if isinstance(event, Finished) and event.reason != "error" and not renderer.finished:
            event = await started.settle(event, "completed")  # the Message's usage carries the ledger's cost
        renderer.feed(event)
    if not renderer.finished:
        raise InternalError("The generation ended without finishing")
