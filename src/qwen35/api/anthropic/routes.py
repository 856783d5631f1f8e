"""Anthropic Messages: the `/v1/messages` family for the one edge, and `POST /v1/messages/count_tokens`.

Owns the Anthropic specifics of a request: the `anthropic-version` check, body validation in Anthropic's
"field.path: message" style, conversion (convert.py), the renderer over render.py's state machine (`event:`-framed
SSE with `ping` keep-alives and `event: error`, or the Message body) and the error envelope. The request life
itself (auth, admission, metering, streaming) is api.edge / api.lifecycle, the same as every API's. Imports api
(edge, errors, lifecycle, sse), serving and this package; never the OpenAI family.
Invariant: every answer on these paths is Anthropic-shaped, errors included, and carries a `request-id` header.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from qwen35.api.anthropic.convert import thinking_display, to_generation_request
from qwen35.api.anthropic.errors import anthropic_error_response, error_event, invalid_body, request_id_of
from qwen35.api.anthropic.protocol_request import CountTokensRequest, MessagesRequest
from qwen35.api.anthropic.protocol_response import MessageTokensCount, PingEvent
from qwen35.api.anthropic.render import MessageRenderer
from qwen35.api.auth import require_api_key
from qwen35.api.body import read_json
from qwen35.api.edge import BaseFamily, BaseRenderer, Context, Plan, resolve_model
from qwen35.api.errors import openai_error_response
from qwen35.api.lifecycle import Started
from qwen35.api.sse import sse_event_of
from qwen35.serving.errors import InvalidRequestError, ServingError
from qwen35.serving.events import ServingEvent, Usage

router = APIRouter()
ENDPOINT = "messages"  # the usage ledger's endpoint label (chat completions use "chat.completions")

ANTHROPIC_PREFIX = "/v1/messages"
SUPPORTED_VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def install_errors(app: Any) -> None:
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


def _frames(events: list[Any]) -> list[bytes]:
    return [sse_event_of(event.to_wire()) for event in events]


class MessagesStreamRenderer(BaseRenderer):
    """One Message: `event:`-framed stream events, or the Message body; an error ends the stream with
    `event: error`."""

    keepalive = sse_event_of(PingEvent().to_wire())

    def __init__(self, message: MessageRenderer, request_id: str) -> None:
        self._message = message
        self._request_id = request_id

    def open(self) -> list[bytes]:
        return [*_frames(list(self._message.start())), self.keepalive]  # a ping right after message_start

    def event(self, index: int, event: ServingEvent) -> list[bytes]:
        return _frames(list(self._message.feed(event)))

    def fail(self, error: ServingError) -> list[bytes]:
        return _frames([error_event(error, self._request_id)])

    def body(self, usage: Usage) -> dict[str, Any]:
        wire: dict[str, Any] = self._message.message().to_wire()
        return wire


class MessagesFamily(BaseFamily):
    name = "anthropic"
    path = ANTHROPIC_PREFIX
    endpoint = ENDPOINT
    input_param = "messages"
    body_model = MessagesRequest
    spec_fields = frozenset({
        "cache_control", "container", "inference_geo", "max_tokens", "messages", "metadata", "model", "output_config",
        "service_tier", "stop_sequences", "stream", "system", "temperature", "thinking", "tool_choice", "tools",
        "top_k", "top_p",
    })
    # prefix caching is automatic (cache_control hints change nothing); there is one place the model runs
    no_effect_fields = frozenset({"cache_control", "inference_geo"})

    def new_id(self) -> str:
        return f"msg_{secrets.token_hex(12)}"

    def check_headers(self, request: Request) -> None:
        _check_version(request)

    def invalid_body(self, errors: list[Any], data: dict[str, Any]) -> ServingError:
        return invalid_body(errors)

    def unknown_field(self, name: str, in_spec: bool) -> ServingError:
        reason = "not supported by this server" if in_spec else "Extra inputs are not permitted"
        return InvalidRequestError(f"{name}: {reason}", param=name)

    async def convert(self, ctx: Context, body: MessagesRequest) -> Plan:
        request_id = request_id_of(ctx.request)
        generation_request = to_generation_request(body, ctx.request_id)

        def renderer(started: Started) -> MessagesStreamRenderer:
            num_prompt_tokens = len(started.generations[0].prompt_token_ids)
            message = MessageRenderer(ctx.request_id, body.model, num_prompt_tokens, thinking_display(body),
                                      web_search=generation_request.web_search is not None)
            return MessagesStreamRenderer(message, request_id)

        return Plan([generation_request], body.stream, renderer)

    def error_response(self, request: Request, exc: ServingError) -> Response:
        return anthropic_error_response(request, exc)


MESSAGES = MessagesFamily()


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    try:
        await require_api_key(request)
        _check_version(request)
        data = await read_json(request)
        MESSAGES.check_fields(data, CountTokensRequest)  # unknown fields refused here too
        try:
            body = CountTokensRequest.model_validate(data)
        except ValidationError as exc:
            raise invalid_body(exc.errors()) from None
        resolve_model(request.app.state.settings, body.model)
        core = request.app.state.core
        # tokenizing a large body takes seconds: off the event loop, so other requests are served meanwhile
        count = await anyio.to_thread.run_sync(core.count_prompt_tokens, to_generation_request(body, "count_tokens"))
    except ServingError as exc:
        return anthropic_error_response(request, exc)
    return JSONResponse(MessageTokensCount(input_tokens=count).to_wire())
