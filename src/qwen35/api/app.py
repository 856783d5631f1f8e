"""The app factory: one FastAPI application over one serving core and one platform.

Owns `create_app` (state, error handlers, request ids, the generation endpoint of every API family in `FAMILIES`,
each family's extra routes) and `/health`. Imports api.* and the serving core type. Adding an API family means a
converter and a renderer (an `api.edge.Family`) and one entry in `FAMILIES`.
Invariant: every response carries `x-request-id` / `request-id`; every error leaves through api.errors.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen35.api.anthropic import routes as anthropic_routes
from qwen35.api.drain import Drain, DrainMiddleware
from qwen35.api.edge import BaseFamily, Family, endpoint
from qwen35.api.errors import install_error_handlers
from qwen35.api.limits import LimitsMiddleware
from qwen35.api.logs import REQUEST_ID
from qwen35.api.metrics import Metrics, MetricsMiddleware
from qwen35.api.openai import models_routes, responses_routes
from qwen35.api.openai.chat_family import ChatFamily
from qwen35.api.openai.completions_family import CompletionsFamily
from qwen35.api.openapi_doc import install_openapi
from qwen35.api.ops_routes import Detokenize, TokenizeCompletion, build_ops_router
from qwen35.api.platform.routes import build_platform_router
from qwen35.api.settings import ServerSettings
from qwen35.api.web.routes import build_web_router
from qwen35.serving.core import ServingCore

FAMILIES: tuple[Family, ...] = (
    ChatFamily(),
    CompletionsFamily(),
    responses_routes.ResponsesFamily(),
    anthropic_routes.MessagesFamily(),
)

KNOWN_PATHS = (*(f.path for f in FAMILIES), "/v1/messages/count_tokens", "/v1/models", "/v1/responses/{id}",
               "/health", "/ready", "/metrics", "/version", "/tokenize", "/detokenize", "/docs", "/openapi.json", "/")


class RequestIdMiddleware:
    """Pure ASGI (streaming-safe): a `req_...` id per request, in `request.state.request_id` and the headers
    both SDK families read (`x-request-id` for openai, `request-id` for anthropic)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)  # every log record of this request carries it
        raw = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in (b"x-request-id", b"request-id")]
                headers += [(b"x-request-id", raw), (b"request-id", raw)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


def create_app(core: ServingCore, platform: Any, settings: ServerSettings | None = None) -> FastAPI:
    """The HTTP application. `platform` is a `qwen35.platform.Platform` (auth, admission, usage ledger)."""
    settings = settings or ServerSettings(max_model_len=core.max_model_len)
    app = FastAPI(
        title="qwen35",
        summary="Qwen3.5-4B behind OpenAI- and Anthropic-compatible APIs",
        docs_url=None,  # /docs is served by ops_routes from packaged Swagger UI (works offline, strict CSP)
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.core = core
    app.state.platform = platform
    app.state.settings = settings
    install_error_handlers(app)
    anthropic_routes.install_errors(app)
    app.state.drain = Drain()
    app.add_middleware(DrainMiddleware, drain=app.state.drain)  # while draining: new generations get 503
    app.add_middleware(LimitsMiddleware)  # inside the request-id middleware: its refusals carry the id too
    app.add_middleware(RequestIdMiddleware)
    app.state.metrics = Metrics(core.engine, known_paths=KNOWN_PATHS)
    app.state.metrics.in_flight.set_function(lambda: app.state.drain.in_flight)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: it sees every answer

    app.include_router(build_ops_router(settings.docs), tags=["meta"])  # /health /ready /metrics /tokenize ...
    app.include_router(models_routes.router, tags=["models"])
    for family in FAMILIES:
        app.add_api_route(family.path, endpoint(family), methods=["POST"], tags=[family.endpoint])
    app.include_router(responses_routes.router, tags=["responses"])
    app.include_router(anthropic_routes.router, tags=["messages"])
    app.include_router(build_platform_router(), tags=["platform"])  # dashboard + /v1/pricing
    app.include_router(build_web_router(), tags=["web"])  # playground, dashboard pages, /v1/capabilities
    install_openapi(app, {**{f.path: f.body_model for f in FAMILIES if isinstance(f, BaseFamily)},
                          "/tokenize": TokenizeCompletion, "/detokenize": Detokenize})
    return app
