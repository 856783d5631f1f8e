"""OpenAI Responses routes: create (stream and not), retrieve, delete, input_items, input_tokens.

Owns the request life on /v1/responses paths: auth (the app's `require_api_key`), body validation, model
resolution, `previous_response_id` chains from the platform document store, conversion to the serving core,
admission and usage metering (`api.lifecycle`, the same path as Chat Completions), rendering and storage.
Imports api (auth, errors, lifecycle, sse), serving and the sibling responses_* modules; never the Anthropic family.
Invariants: errors use the OpenAI envelope (api.errors); a stored response is read, chained and deleted only with
the key that created it; an admitted call is settled exactly once, before the client hears the end; a response is
stored once it reached a terminal status (completed, incomplete or failed) unless `store` is false.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, AsyncIterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from qwen35.api.auth import require_api_key
from qwen35.api.errors import openai_error_response, validation_error
from qwen35.api.lifecycle import ClientDisconnected, Started, start, until_disconnect
from qwen35.api.openai.responses_convert import input_items, response_shell, to_generation_request
from qwen35.api.openai.responses_events import StreamEvent
from qwen35.api.openai.responses_render import ResponseRenderer
from qwen35.api.openai.responses_request import ResponsesRequest
from qwen35.api.openai.responses_store import ResponseStore
from qwen35.api.openai.responses_types import DeletedResponse, InputItemList, InputTokens
from qwen35.api.sse import SSEResponse, sse_event
from qwen35.serving.errors import InternalError, InvalidRequestError, NotFoundError, ServingError
from qwen35.serving.events import Finished, ServingEvent

log = logging.getLogger(__name__)
router = APIRouter()
ENDPOINT = "responses"  # the usage ledger's endpoint label (chat completions use "chat.completions")


def _store(request: Request) -> ResponseStore:
    return ResponseStore(request.app.state.platform.documents)


async def _body(request: Request) -> ResponsesRequest:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        raise validation_error([{"type": "json_invalid", "loc": ("body",), "msg": "invalid JSON"}]) from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        return ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # a union (string | items) reports one error per member: the deepest location explains the problem
        deepest = max(errors, key=lambda error: len(error.get("loc", ()))) if errors else None
        raise validation_error([deepest] if deepest else []) from None


def _check_model(request: Request, name: str) -> str:
    """The canonical model id (for metering), or 404 model_not_found; responses echo the caller's name."""
    model = request.app.state.settings.resolve_model(name)
    if model is None:
        raise NotFoundError(
            f"The model `{name}` does not exist or you do not have access to it.", param="model", code="model_not_found"
        )
    return str(model)


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


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    response_id = f"resp_{secrets.token_hex(24)}"
    try:
        key = await require_api_key(request)
        req = await _body(request)
        model = _check_model(request, req.model)
        if req.background:
            raise InvalidRequestError("Background responses are not supported by this server.", param="background")
        history = await _history(request, key.key_id, req)
        generation_request = to_generation_request(req, response_id, history)
        started = await start(request, key, ENDPOINT, model, [generation_request], response_id)
    except ServingError as exc:
        return openai_error_response(request, exc)
    summarize = req.reasoning is not None and (req.reasoning.summary or req.reasoning.generate_summary) is not None
    renderer = ResponseRenderer(
        response_shell(req, response_id, req.model),
        include_logprobs=generation_request.logprobs is not None,
        summarize=summarize,
    )
    run = _Run(request, key, req, started, renderer, [*history, *input_items(req)])
    headers = started.call.response_headers("openai")
    if req.stream:
        return SSEResponse(run.stream(), headers=headers)
    return await run.complete(headers)


class _Run:
    """One started generation: drives the renderer, then settles metering and stores the outcome, once.

    The ledger record and the stored response both exist before the client hears the end (`response.completed`
    / `incomplete` / `failed`, or the JSON body): the final usage carries the ledger's `cost`, and a client that
    chains or retrieves the response right after it ended finds it.
    """

    def __init__(self, request: Request, key: Any, req: ResponsesRequest, started: Started,
                 renderer: ResponseRenderer, conversation: list[dict[str, Any]]) -> None:
        self.request, self.key, self.req = request, key, req
        self.started, self.renderer = started, renderer
        self.conversation = conversation
        self.settled = False

    async def _settle(self, status: str) -> None:
        """Record usage (`Started.close`, a no-op once `_feed` settled it), then store a finished response."""
        if self.settled:
            return
        self.settled = True
        with anyio.CancelScope(shield=True):
            await self.started.close(status)
            try:
                if self.renderer.finished and self.req.store is not False:
                    await _store(self.request).save(
                        self.key.key_id, self.renderer.response().to_wire(), self.conversation, self.key.account_id
                    )
            except Exception:  # noqa: BLE001 - the ledger has it; a failed save must not turn the answer into an error
                log.exception("failed to store response %s", self.renderer.response_id)

    async def _feed(self, event: ServingEvent) -> list[StreamEvent]:
        if isinstance(event, Finished) and event.reason != "error" and not self.renderer.finished:
            # the ledger first: it prices the request, and the final usage sent carries that cost
            event = await self.started.settle(event, "incomplete" if event.reason == "length" else "completed")
        return self.renderer.feed(event)

    async def _collect(self) -> None:
        async for _, event in self.started.events():
            await self._feed(event)
        if not self.renderer.finished:
            raise InternalError("The generation ended without finishing")

    async def complete(self, headers: dict[str, str]) -> Response:
        status = "cancelled"
        try:
            await until_disconnect(self.request, self._collect())
            status = _status_of(self.renderer)
        except ClientDisconnected:
            return Response(status_code=499)
        except ServingError as exc:
            status = "failed"
            return openai_error_response(self.request, exc)
        finally:
            await self._settle(status)
        if status == "failed":
            error = self.renderer.response().error
            return openai_error_response(self.request, InternalError(error.message if error else "Generation failed"))
        return JSONResponse(self.renderer.response().to_wire(), headers=headers)

    async def stream(self) -> AsyncIterator[bytes]:
        status = "cancelled"
        try:
            for event in self.renderer.start():
                yield _frame(event)
            final: list[StreamEvent] = []  # the terminal event and what closes with it: sent once settled
            try:
                async for _, item in self.started.events():
                    events = await self._feed(item)
                    if self.renderer.finished:
                        final = events
                        break
                    for event in events:
                        yield _frame(event)
                if not self.renderer.finished:
                    raise InternalError("The generation ended without finishing")
            except ServingError as exc:
                code = "rate_limit_exceeded" if exc.kind == "rate_limited" else "server_error"
                final = self.renderer.fail(exc.message, code)
            except Exception:  # noqa: BLE001 - the 200 is sent: report in-stream, never crash the server
                log.exception("responses stream %s failed", self.renderer.response_id)
                final = self.renderer.fail("The server had an error while processing your request.")
            status = _status_of(self.renderer)
            await self._settle(status)
            for event in final:
                yield _frame(event)
        finally:
            await self._settle(status)


def _status_of(renderer: ResponseRenderer) -> str:
    return str(renderer.response().status) if renderer.finished else "cancelled"


def _frame(event: Any) -> bytes:
    payload = event.to_wire()
    return sse_event(payload["type"], payload)


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
        req = await _body(request)
        _check_model(request, req.model)
        history = await _history(request, key.key_id, req)
        count = request.app.state.core.count_prompt_tokens(to_generation_request(req, "count", history))
    except ServingError as exc:
        return openai_error_response(request, exc)
    return JSONResponse(InputTokens(input_tokens=count).to_wire())
