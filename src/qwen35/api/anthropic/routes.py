"""Anthropic Messages routes: `POST /v1/messages` (stream and not) and `POST /v1/messages/count_tokens`.

Owns the request life on Anthropic paths: auth (the app's `require_api_key`), the `anthropic-version` check, body
validation, model resolution, conversion to the serving core, admission and usage metering (the same
`api.metering` calls as Chat Completions, so every API bills alike), and rendering. Imports api (auth, metering,
sse, settings-shaped state), serving and this package; never the OpenAI family.
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
from qwen35.api.metering import MeteredCall, admit
from qwen35.api.sse import SSEResponse
from qwen35.serving.errors import InternalError, InvalidRequestError, NotFoundError, ServingError
from qwen35.serving.events import Usage

router = APIRouter()

ANTHROPIC_PREFIX = "/v1/messages"
SUPPORTED_VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_Body = TypeVar("_Body", bound=BaseModel)


def register_error_family(app: Any) -> None:
    """Make the app render every error on /v1/messages* paths (auth, 404, 405...) in Anthropic's envelope."""
    families = getattr(app.state, "error_families", None)
    if families is not None and not getattr(app.state, "_anthropic_errors_registered", False):
        families.register(ANTHROPIC_PREFIX, anthropic_error_response)
        app.state._anthropic_errors_registered = True


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
    settings = request.app.state.settings
    if settings.resolve_model(name) is None:
        raise NotFoundError(f"model: {name}")
    return name  # echo the caller's name, as Anthropic echoes the requested model


async def _prologue(request: Request, model: type[_Body]) -> tuple[Any, _Body]:
    register_error_family(request.app)
    key = await require_api_key(request)
    _check_version(request)
    body = await _parse(request, model)
    _resolve_model(request, body.model)  # type: ignore[attr-defined]
    return key, body


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    request_id = request_id_of(request)
    try:
        _, body = await _prologue(request, CountTokensRequest)
        generation_request = to_generation_request(body, request_id)
        count = request.app.state.core.count_prompt_tokens(generation_request)
    except ServingError as exc:
        return anthropic_error_response(request, exc)
    return JSONResponse(MessageTokensCount(input_tokens=count).to_wire(), headers={"request-id": request_id})


@router.post("/v1/messages")
async def create_message(request: Request) -> Response:
    request_id = request_id_of(request)
    message_id = f"msg_{secrets.token_hex(12)}"
    call: MeteredCall | None = None
    try:
        key, body = await _prologue(request, MessagesRequest)
        core = request.app.state.core
        prepared = core.prepare(to_generation_request(body, message_id))
        call = await admit(
            request.app.state.platform,
            key,
            "/v1/messages",
            request.app.state.settings.model_id,
            len(prepared.prompt_token_ids),
            int(prepared.params.max_tokens or 0),
        )
        generation = core.generate(prepared)
        try:
            await generation.start()
        except BaseException:
            await call.finish(message_id, None, "refused")
            call = None
            raise
    except ServingError as exc:
        if call is not None:
            await call.finish(message_id, None, "refused")
        return anthropic_error_response(request, exc)

    renderer = MessageRenderer(
        message_id, body.model, len(prepared.prompt_token_ids), thinking_display=thinking_display(body)
    )
    headers = {"request-id": request_id, **call.response_headers("anthropic")}
    metered = call

    async def settle(usage: Usage | None, status: str) -> None:
        await metered.finish(message_id, usage, status)

    if body.stream:
        return SSEResponse(message_stream(generation, renderer, settle, request_id), headers=headers)
    return await _complete(request, generation, renderer, settle, headers)


async def _complete(request: Request, generation: Any, renderer: MessageRenderer, settle: Any, headers: dict) -> Response:
    status = "cancelled"
    try:
        async for event in generation:
            renderer.feed(event)
        if not renderer.finished:
            raise InternalError("The generation ended without finishing")
        status = "completed"
    except GenerationFailed as exc:
        status = "failed"
        return anthropic_error_response(request, InternalError(exc.message))
    except ServingError as exc:
        status = "failed"
        return anthropic_error_response(request, exc)
    finally:
        await generation.aclose()
        await settle(generation.usage, status)
    return JSONResponse(renderer.message().to_wire(), headers=headers)
