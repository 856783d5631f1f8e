"""`POST /v1/chat/completions`: validate, convert, run on the serving core, answer as JSON or SSE.

Owns the HTTP flow of one chat completion (auth, model check, metering through api.lifecycle, streaming with an
in-stream error chunk once headers are sent, disconnect -> abort). Imports the chat request/convert/render
modules, api.lifecycle/sse/errors/auth. Invariant: after the first SSE byte every failure is a `data: {"error":..}`
chunk followed by `[DONE]`; before it, a normal HTTP error.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from qwen35.api.auth import require_api_key
from qwen35.api.errors import openai_error_body
from qwen35.api.lifecycle import ClientDisconnected, Started, start, until_disconnect
from qwen35.api.openai.chat_convert import to_generation_request
from qwen35.api.openai.chat_render import ChatAccumulator, ChatChunker
from qwen35.api.openai.chat_request import ChatCompletionRequest
from qwen35.api.openai.models_routes import resolve_model
from qwen35.api.sse import DONE, SSEResponse, sse_data
from qwen35.platform.keys import KeyInfo
from qwen35.serving.errors import InternalError, ServingError

log = logging.getLogger(__name__)
router = APIRouter()
ENDPOINT = "chat.completions"


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, key: KeyInfo = Depends(require_api_key)
) -> Response:
    settings = request.app.state.settings
    model = resolve_model(settings, body.model)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    generation_request = to_generation_request(body, completion_id)
    started = await start(request, key, ENDPOINT, model, [generation_request], completion_id)
    created = int(time.time())
    headers = started.call.response_headers("openai")
    if body.stream:
        chunker = ChatChunker(
            completion_id, created, model, settings.system_fingerprint, bool(body.logprobs), body.include_usage()
        )
        return SSEResponse(_stream(started, chunker, body.n, body.include_usage()), headers=headers)
    accumulator = ChatAccumulator(body.n, bool(body.logprobs))
    status = "cancelled"
    try:
        await until_disconnect(request, _collect(started, accumulator))
        status = "completed"
    except ClientDisconnected:
        return Response(status_code=499)
    except ServingError:
        status = "failed"
        raise
    finally:
        await started.close(status)
    payload = accumulator.body(completion_id, created, model, settings.system_fingerprint, started.usage)
    return JSONResponse(payload, headers=headers)


async def _collect(started: Started, accumulator: ChatAccumulator) -> None:
    async for _, event in started.events():
        accumulator.add(event)


async def _stream(started: Started, chunker: ChatChunker, n: int, include_usage: bool) -> AsyncIterator[bytes]:
    status = "cancelled"
    try:
        for chunk in chunker.opening(n):
            yield sse_data(chunk)
        async for _, event in started.events():
            for chunk in chunker.on_event(event):
                yield sse_data(chunk)
        status = "completed"
        await started.close(status)  # the ledger holds the request (and prices it) before the client hears the end
        if include_usage:
            yield sse_data(chunker.usage_chunk(started.usage))
        yield DONE
    except ServingError as exc:
        status = "failed"
        await started.close(status)
        yield sse_data(openai_error_body(exc))
        yield DONE
    except Exception:  # noqa: BLE001 - headers are sent: report in-stream, never drop the connection silently
        log.exception("chat stream %s failed", started.request_id)
        status = "failed"
        await started.close(status)
        yield sse_data(openai_error_body(InternalError("The server had an error while generating the answer.")))
        yield DONE
    finally:
        await started.close(status)
