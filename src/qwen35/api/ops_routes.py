"""Operator routes: /health, /ready, /metrics, /version, /docs, and vLLM's /tokenize and /detokenize.

Owns liveness vs readiness (`/health`: the process and its engine are alive, 503 once the engine died so a
supervisor restarts it, and 503 `store_unavailable` while the billing store refuses writes, from memory; `/ready`: also the store answers and the server is not draining, for load balancers), the
Prometheus scrape, and tokenization as a chat request would see it (`/tokenize` with `messages` runs the Chat
Completions converter and the core's `prepare`, so its count is the request's `prompt_tokens`).
Invariant: none of these routes generates or bills anything; /tokenize and /detokenize need an API key.
"""

from __future__ import annotations

import importlib.metadata
import platform as host
import sys
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from qwen35.api.auth import require_api_key
from qwen35.api.body import read_json
from qwen35.api.edge import Context, resolve_model
from qwen35.api.errors import validation_error
from qwen35.api.metrics import CONTENT_TYPE
from qwen35.api.openai.chat_family import ChatFamily
from qwen35.api.web.routes import page
from qwen35.serving.errors import InvalidRequestError, ServingError

STORE_CHECK_TIMEOUT_S = 2.0


class TokenizeCompletion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    prompt: str
    add_special_tokens: StrictBool = True  # accepted for vLLM clients: Qwen adds no BOS, so it changes nothing
    return_token_strs: StrictBool = False


class Detokenize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    tokens: list[StrictInt] = Field(max_length=1_000_000)


def _version() -> str:
    try:
        return importlib.metadata.version("qwen35")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _engine_alive(request: Request) -> bool:
    return bool(getattr(request.app.state.core.engine, "alive", True))


def _select_one(platform: Any) -> None:
    from sqlalchemy import text

    with platform.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def _store_ok(request: Request) -> tuple[bool, str | None]:
    platform = request.app.state.platform
    check = getattr(platform, "check_store", None) or (lambda: _select_one(platform))
    try:
        with anyio.fail_after(STORE_CHECK_TIMEOUT_S):
            await anyio.to_thread.run_sync(check)
    except TimeoutError:
        return False, f"the store did not answer within {STORE_CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        return False, f"the store is unavailable: {type(exc).__name__}"
    return True, None


def build_ops_router(docs: bool) -> APIRouter:
    router = APIRouter()
    chat = ChatFamily()

    async def health(request: Request) -> Response:
        settings, core = request.app.state.settings, request.app.state.core
        body: dict[str, Any] = {"status": "ok", "model": settings.model_id, "max_model_len": core.max_model_len}
        if not _engine_alive(request):
            death = getattr(core.engine, "death", None)
            return JSONResponse({**body, "status": "engine_dead", "reason": death}, status_code=503)
        store_status = getattr(request.app.state.platform, "store_status", None)  # from memory: answers at once
        if store_status is not None:
            body["store"] = store_status()
            if not body["store"]["ok"]:  # locked / read-only / unreachable: answers cannot be billed
                return JSONResponse({**body, "status": "store_unavailable", "reason": body["store"]["error"]},
                                    status_code=503, headers={"retry-after": "5"})
        return JSONResponse(body)

    async def ready(request: Request) -> Response:
        reasons: list[str] = []
        if not _engine_alive(request):
            reasons.append("the engine is not running")
        if request.app.state.drain.draining:
            reasons.append("the server is draining (shutting down)")
        store_ok, why = await _store_ok(request)
        if not store_ok and why:
            reasons.append(why)
        if reasons:
            return JSONResponse({"status": "unavailable", "reasons": reasons}, status_code=503,
                                headers={"retry-after": "5"})
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    async def version(request: Request) -> dict[str, Any]:
        import torch

        return {"version": _version(), "model": request.app.state.settings.model_id,
                "python": sys.version.split()[0], "torch": torch.__version__, "platform": host.platform()}

    async def tokenize(request: Request) -> Response:
        try:
            key = await require_api_key(request)
            body = await read_json(request)
            if "messages" in body:
                ids = await _chat_prompt_ids(request, key, body, chat)
                return_strs = bool(body.get("return_token_strs", False))
            else:
                parsed = _parse(TokenizeCompletion, body)
                resolve_model(request.app.state.settings, parsed.model or request.app.state.settings.model_id)
                tokenizer = request.app.state.core.tokenizer
                ids = await anyio.to_thread.run_sync(tokenizer.encode, parsed.prompt)
                return_strs = parsed.return_token_strs
        except ServingError as exc:
            return chat.error_response(request, exc)
        core = request.app.state.core
        strs = [core.tokenizer.id_to_token(i) for i in ids] if return_strs else None
        return JSONResponse({"count": len(ids), "max_model_len": core.max_model_len, "tokens": ids,
                             "token_strs": strs})

    async def detokenize(request: Request) -> Response:
        try:
            await require_api_key(request)
            parsed = _parse(Detokenize, await read_json(request))
            core = request.app.state.core
            resolve_model(request.app.state.settings, parsed.model or request.app.state.settings.model_id)
            if any(not 0 <= t < core.tokenizer.vocab_size for t in parsed.tokens):
                raise InvalidRequestError(f"token ids must be in [0, {core.tokenizer.vocab_size})", param="tokens")
            text = await anyio.to_thread.run_sync(core.tokenizer.decode, parsed.tokens)
        except ServingError as exc:
            return chat.error_response(request, exc)
        return JSONResponse({"prompt": text})

    async def docs_page() -> Response:
        return page("docs.html")

    router.add_api_route("/health", health, methods=["GET"], summary="Liveness (503 once the engine died)")
    router.add_api_route("/ready", ready, methods=["GET"], summary="Readiness: engine, store, not draining")
    router.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics", include_in_schema=False)
    router.add_api_route("/version", version, methods=["GET"], summary="Server version")
    router.add_api_route("/tokenize", tokenize, methods=["POST"], summary="Tokenize a prompt or chat messages")
    router.add_api_route("/detokenize", detokenize, methods=["POST"], summary="Text of token ids")
    if docs:
        router.add_api_route("/docs", docs_page, methods=["GET"], include_in_schema=False)
    return router


async def _chat_prompt_ids(request: Request, key: Any, body: dict[str, Any], chat: ChatFamily) -> list[int]:
    """The prompt a Chat Completions request with these messages would run (template, tools, thinking, media)."""
    extra: dict[str, Any] = {k: body[k] for k in ("tools", "chat_template_kwargs", "reasoning_effort", "enable_thinking",
                                  "thinking_budget", "tool_choice") if k in body}
    unknown = set(body) - {"model", "messages", "add_generation_prompt", "add_special_tokens", "return_token_strs",
                           *extra}
    if unknown:
        raise InvalidRequestError(f"Unknown parameter: '{sorted(unknown)[0]}'", param=sorted(unknown)[0],
                                  code="unknown_parameter")
    if body.get("add_generation_prompt", True) is not True:
        raise InvalidRequestError("add_generation_prompt=false is not supported: the count is what a chat request "
                                  "would run", param="add_generation_prompt")
    settings = request.app.state.settings
    chat_body = chat.validate({"model": body.get("model") or settings.model_id, "messages": body["messages"],
                               "max_completion_tokens": 1, **extra})
    ctx = Context(request, key, resolve_model(settings, chat.model_name(chat_body)), chat.new_id())
    plan = await chat.convert(ctx, chat_body)
    core = request.app.state.core
    # rendering and tokenizing a large conversation can take a while: off the event loop
    prepared = await anyio.to_thread.run_sync(lambda: core.prepare(plan.requests[0]))
    return list(prepared.prompt_token_ids)


def _parse(model: type[BaseModel], body: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc.errors(), body) from exc
