"""`POST /v1/completions` (legacy): one generation per prompt on the serving core, as JSON or SSE.

Owns the HTTP flow of a legacy completion (auth, model check, metering, echo, streaming with an in-stream error
chunk, disconnect -> abort). Imports the completions request/render modules and api.lifecycle/sse/errors/auth.
Invariant: every prompt of the request is admitted and metered as one request (one usage record).
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
from qwen35.api.openai.completions_render import CompletionRenderer, Echo, make_echo
from qwen35.api.openai.completions_request import CompletionRequest, to_generation_requests
from qwen35.api.openai.models_routes import resolve_model
from qwen35.api.sse import DONE, SSEResponse, sse_data
from qwen35.platform.keys import KeyInfo
from qwen35.serving.errors import InternalError, ServingError

log = logging.getLogger(__name__)
router = APIRouter()
ENDPOINT = "completions"


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: CompletionRequest, request: Request, key: KeyInfo = Depends(require_api_key)
) -> Response:
    settings = request.app.state.settings
    model = resolve_model(settings, body.model)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    tokenizer = request.app.state.core.tokenizer
    requests = to_generation_requests(body, completion_id, tokenizer)
    started = await start(request, key, ENDPOINT, model, requests, completion_id)
    echoes = [_echo(body, prompt, generation, tokenizer) for prompt, generation in zip(body.prompt_list(), started.generations)]
    include_usage = body.include_usage()
    renderer = CompletionRenderer(
        completion_id, int(time.time()), model, settings.system_fingerprint, body.n, echoes,
        body.logprobs is not None, include_usage,
    )
    headers = started.call.response_headers("openai")
    if body.stream:
        return SSEResponse(_stream(started, renderer, include_usage), headers=headers)
    status = "cancelled"
    try:
        renderer.start()
        await until_disconnect(request, _collect(started, renderer))
        status = "completed"
    except ClientDisconnected:
        return Response(status_code=499)
    except ServingError:
        status = "failed"
        raise
    finally:
        await started.close(status)
    return JSONResponse(renderer.body(started.usage), headers=headers)


def _echo(body: CompletionRequest, prompt: str | list[int], generation: object, tokenizer: object) -> Echo | None:
    if not body.echo:
        return None
    ids = list(generation.prompt_token_ids)  # type: ignore[attr-defined]
    text = prompt if isinstance(prompt, str) else tokenizer.decode(ids)  # type: ignore[attr-defined]
    tokens = [bytes(tokenizer.token_bytes(t)).decode("utf-8", errors="replace") for t in ids]  # type: ignore[attr-defined]
    return make_echo(text, tokens, generation.prompt_logprobs)  # type: ignore[attr-defined]


async def _collect(started: Started, renderer: CompletionRenderer) -> None:
    async for prompt_index, event in started.events():
        renderer.on_event(prompt_index, event)


async def _stream(started: Started, renderer: CompletionRenderer, include_usage: bool) -> AsyncIterator[bytes]:
    status = "cancelled"
    try:
        for chunk in renderer.start():
            yield sse_data(chunk)
        async for prompt_index, event in started.events():
            for chunk in renderer.on_event(prompt_index, event):
                yield sse_data(chunk)
        status = "completed"
        await started.close(status)  # the ledger holds the request (and prices it) before the client hears the end
        if include_usage:
            yield sse_data(renderer.usage_chunk(started.usage))
        yield DONE
    except ServingError as exc:
        status = "failed"
        await started.close(status)
        yield sse_data(openai_error_body(exc))
        yield DONE
    except Exception:  # noqa: BLE001 - headers are sent: report in-stream
        log.exception("completion stream %s failed", started.request_id)
        status = "failed"
        yield sse_data(openai_error_body(InternalError("The server had an error while generating the completion.")))
        yield DONE
    finally:
        await started.close(status)
