"""OpenAI Responses routes: create (stream and not), retrieve, delete, input_items, input_tokens.

Owns the Responses specifics: body validation, `previous_response_id` chains from the platform document store,
conversion, the renderer (numbered `event:` frames or the Response) and storage of finished responses, plus the
retrieve / delete / input_items / input_tokens routes. The create request's life (auth, admission, metering,
streaming) is api.edge / api.lifecycle, the same as every API's. Imports api (auth, body, edge, errors,
lifecycle, sse), serving and the sibling responses_* modules; never the Anthropic family.
Invariants: errors use the OpenAI envelope (api.errors); a stored response is read, chained and deleted only with
the key that created it; an admitted call is settled exactly once, before the client hears the end; a response is
stored once it reached a terminal status (completed, incomplete or failed) unless `store` is false.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from qwen35.api.auth import require_api_key
from qwen35.api.body import read_json
from qwen35.api.edge import BaseRenderer, Context, Plan, resolve_model
from qwen35.api.errors import openai_error_response, validation_error
from qwen35.api.lifecycle import Started
from qwen35.api.openai.family import HOSTED_ONLY, OpenAIFamily
from qwen35.api.openai.responses_convert import input_items, response_shell, to_generation_request
from qwen35.api.openai.responses_events import StreamEvent
from qwen35.api.openai.responses_render import ResponseRenderer
from qwen35.api.openai.responses_request import ResponsesRequest
from qwen35.api.openai.responses_store import ResponseStore
from qwen35.api.openai.responses_types import DeletedResponse, InputItemList, InputTokens
from qwen35.api.sse import sse_event_of
from qwen35.serving.errors import InvalidRequestError, NotFoundError, ServingError
from qwen35.serving.events import ServingEvent, Usage

router = APIRouter()
ENDPOINT = "responses"  # the usage ledger's endpoint label (chat completions use "chat.completions")


def _store(request: Request) -> ResponseStore:
    return ResponseStore(request.app.state.platform.documents)


def _validate(data: dict[str, Any]) -> ResponsesRequest:
    try:
        return ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # a union (string | items) reports one error per member: the deepest location explains the problem
        deepest = max(errors, key=lambda error: len(error.get("loc", ()))) if errors else None
        raise validation_error([deepest] if deepest else []) from None


async def _history(request: Request, key_id: str, req: ResponsesRequest) -> list[dict[str, Any]]:
    if req.previous_response_id is None:
        return []
    stored = await _store(request).load(key_id, req.previous_response_id)
    if stored is None:
        raise InvalidRequestError(
            f"Previous response with id '{req.previous_response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return stored.history()


class ResponsesStreamRenderer(BaseRenderer):
    """One Response: numbered `event:` frames or the Response body; stored (unless `store` is false) once it
    reached a terminal status, after the ledger recorded it and before the client hears the end."""

    def __init__(self, request: Request, key: Any, req: ResponsesRequest, renderer: ResponseRenderer,
                 conversation: list[dict[str, Any]]) -> None:
        self._request, self._key, self._req = request, key, req
        self._renderer = renderer
        self._conversation = conversation

    def open(self) -> list[bytes]:
        return _frames(self._renderer.start())

    def event(self, index: int, event: ServingEvent) -> list[bytes]:
        return _frames(self._renderer.feed(event))

    def fail(self, error: ServingError) -> list[bytes]:
        code = "rate_limit_exceeded" if error.kind == "rate_limited" else "server_error"
        return _frames(self._renderer.fail(error.message, code))

    def body(self, usage: Usage) -> dict[str, Any]:
        wire: dict[str, Any] = self._renderer.response().to_wire()
        return wire

    async def settled(self, status: str) -> None:
        if self._renderer.finished and self._req.store is not False:
            await _store(self._request).save(
                self._key.key_id, self._renderer.response().to_wire(), self._conversation, self._key.account_id
            )


class ResponsesFamily(OpenAIFamily):
    path = "/v1/responses"
    endpoint = ENDPOINT
    input_param = "input"
    body_model = ResponsesRequest
    spec_fields = frozenset({
        "background", "context_management", "conversation", "include", "input", "instructions", "max_output_tokens",
        "max_tool_calls", "metadata", "model", "moderation", "parallel_tool_calls", "previous_response_id", "prompt",
        "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning", "safety_identifier",
        "service_tier", "store", "stream", "stream_options", "temperature", "text", "tool_choice", "tools",
        "top_logprobs", "top_p", "truncation", "user",
    })
    no_effect_fields = HOSTED_ONLY | {"stream_options"}  # Responses' stream_options only asks for obfuscation

    def new_id(self) -> str:
        return f"resp_{secrets.token_hex(24)}"

    def validate(self, data: dict[str, Any]) -> ResponsesRequest:
        self.check_fields(data)
        req = _validate(data)
        if req.background:
            raise InvalidRequestError("Background responses are not supported by this server.", param="background")
        return req

    async def convert(self, ctx: Context, body: ResponsesRequest) -> Plan:
        history = await _history(ctx.request, ctx.key.key_id, body)
        generation_request = to_generation_request(body, ctx.request_id, history)
        reasoning = body.reasoning
        summarize = reasoning is not None and (reasoning.summary or reasoning.generate_summary) is not None

        def renderer(started: Started) -> ResponsesStreamRenderer:
            inner = ResponseRenderer(
                response_shell(body, ctx.request_id, body.model),
                include_logprobs=generation_request.logprobs is not None,
                summarize=summarize,
                web_search=generation_request.web_search is not None,
                include_sources=bool(body.include and "web_search_call.action.sources" in body.include),
            )
            return ResponsesStreamRenderer(ctx.request, ctx.key, body, inner, [*history, *input_items(body)])

        return Plan([generation_request], bool(body.stream), renderer)


RESPONSES = ResponsesFamily()


def _frames(events: list[StreamEvent]) -> list[bytes]:
    return [sse_event_of(event.to_wire()) for event in events]


async def _load_owned(request: Request, response_id: str) -> tuple[Any, Any]:
    key = await require_api_key(request)
    stored = await _store(request).load(key.key_id, response_id)
    if stored is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
    return key, stored


@router.get("/v1/responses/{response_id}")
async def retrieve_response(request: Request, response_id: str) -> Response:
    try:
        _, stored = await _load_owned(request, response_id)
    except ServingError as exc:
        return openai_error_response(request, exc)
    return JSONResponse(stored.response)


@router.delete("/v1/responses/{response_id}")
async def delete_response(request: Request, response_id: str) -> Response:
    try:
        key = await require_api_key(request)
        if not await _store(request).delete(key.key_id, response_id):
            raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
    except ServingError as exc:
        return openai_error_response(request, exc)
    return JSONResponse(DeletedResponse(id=response_id).to_wire())


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(request: Request, response_id: str) -> Response:
    try:
        _, stored = await _load_owned(request, response_id)
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequestError("order must be 'asc' or 'desc'", param="order")
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            raise InvalidRequestError("limit must be an integer", param="limit") from None
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit must be between 1 and 100", param="limit")
    except ServingError as exc:
        return openai_error_response(request, exc)
    items = [_with_id(item, response_id, n) for n, item in enumerate(stored.input_items)]
    if order == "desc":
        items.reverse()
    after = request.query_params.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return JSONResponse(
        InputItemList(
            data=page, first_id=page[0]["id"] if page else None, last_id=page[-1]["id"] if page else None,
            has_more=len(items) > len(page),
        ).to_wire()
    )


def _with_id(item: dict[str, Any], response_id: str, n: int) -> dict[str, Any]:
    """Listed items need an id (and messages a status); input items may have been sent without."""
    listed = dict(item)
    if listed.get("type") == "message":
        listed.setdefault("status", "completed")
    if not listed.get("id"):
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
        listed["id"] = f"{prefix.get(listed.get('type', 'message'), 'item')}_{response_id[5:29]}{n:04d}"
    return listed


@router.post("/v1/responses/input_tokens")
async def count_input_tokens(request: Request) -> Response:
    try:
        key = await require_api_key(request)
        data = await read_json(request)
        RESPONSES.check_fields(data)  # unknown fields refused here too
        req = _validate(data)
        resolve_model(request.app.state.settings, req.model)
        history = await _history(request, key.key_id, req)
        count = request.app.state.core.count_prompt_tokens(to_generation_request(req, "count", history))
    except ServingError as exc:
        return openai_error_response(request, exc)
    return JSONResponse(InputTokens(input_tokens=count).to_wire())
