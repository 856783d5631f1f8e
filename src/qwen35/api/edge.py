"""The one HTTP handler of every generation endpoint: a family is a converter and a renderer, nothing else.

Owns `Family` (what an API family supplies: its path, ledger label, body validation, conversion to
`GenerationRequest`s and a `Renderer`, its error format), `Plan` (a converted request), the model resolver and
`handle`, the single request flow: auth -> family headers -> body (api.body) -> validation -> model -> conversion
-> start (admission, engine) -> stream or collect (api.lifecycle). Imports api (auth, body, lifecycle, settings,
sse) and serving; never an API family (families import this).
Invariant: before the first response byte every failure leaves in the family's error format, with the family's
name for the input field (`messages`, `prompt`, `input`); after it, the family's in-stream error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from qwen35.api.auth import require_api_key
from qwen35.api.body import read_json
from qwen35.api.lifecycle import ClientDisconnected, Renderer, Started, collect, start, stream_body
from qwen35.api.settings import ServerSettings
from qwen35.api.sse import KEEPALIVE, SSEResponse
from qwen35.platform.keys import KeyInfo
from qwen35.serving.core import ServingCore
from qwen35.serving.errors import ContextLengthExceededError, NotFoundError, ServingError
from qwen35.serving.events import Usage
from qwen35.serving.request import GenerationRequest


class ModelNotFoundError(NotFoundError):
    """A 404 for a model name that is not served; `name` lets each family word it its own way."""

    def __init__(self, name: object) -> None:
        super().__init__(
            f"The model `{name}` does not exist or you do not have access to it.", param="model", code="model_not_found"
        )
        self.name = str(name)


def resolve_model(settings: ServerSettings, name: object) -> str:
    """Canonical id of a requested model, or a 404 `model_not_found` (rendered by the caller's family)."""
    model = settings.resolve_model(name)
    if model is None:
        raise ModelNotFoundError(name)
    return model


@dataclass(frozen=True)
class Context:
    """What a converter may use besides the body: the caller's key, the served model, the id of this answer."""

    request: Request
    key: KeyInfo
    model: str  # canonical id (metering); the answer echoes the caller's name where the family does
    request_id: str

    @property
    def core(self) -> ServingCore:
        core: ServingCore = self.request.app.state.core
        return core

    @property
    def settings(self) -> ServerSettings:
        settings: ServerSettings = self.request.app.state.settings
        return settings


@dataclass(frozen=True)
class Plan:
    """A converted request: what to generate, whether to stream, and how to render it once started."""

    requests: list[GenerationRequest]
    stream: bool
    renderer: Callable[[Started], Renderer]


class Family(Protocol):
    """An API family's generation endpoint."""

    name: str  # "openai" | "anthropic": rate-limit header set
    path: str
    endpoint: str  # the usage ledger's endpoint label
    input_param: str  # the family's name of the prompt field (context-length errors name it)

    def new_id(self) -> str: ...

    def check_headers(self, request: Request) -> None: ...

    def validate(self, data: dict[str, Any]) -> Any: ...

    def model_name(self, body: Any) -> str: ...

    async def convert(self, ctx: Context, body: Any) -> Plan: ...

    def error_response(self, request: Request, exc: ServingError) -> Response: ...


class BaseFamily:
    """Defaults for a family: no extra headers, the body's `model` field, pydantic validation with the family's
    error wording (`invalid_body`), nothing to do once settled."""

    body_model: type[BaseModel]
    # Fields of the official API that only tune a hosted service (caching hints, ids, tiers): accepted, no effect.
    # Every other field the body model does not declare is refused with a 400, never silently ignored.
    no_effect_fields: frozenset[str] = frozenset()
    spec_fields: frozenset[str] = frozenset()  # the official request fields (to word the refusal)

    def check_headers(self, request: Request) -> None:
        return None

    def invalid_body(self, errors: list[Any], data: dict[str, Any]) -> ServingError:
        raise NotImplementedError

    def unknown_field(self, name: str, in_spec: bool) -> ServingError:
        raise NotImplementedError

    def validate(self, data: dict[str, Any]) -> Any:
        self.check_fields(data)
        try:
            return self.body_model.model_validate(data)
        except ValidationError as exc:
            raise self.invalid_body(list(exc.errors()), data) from None

    def check_fields(self, data: dict[str, Any], model: type[BaseModel] | None = None) -> None:
        """Refuse fields that `model` (default: the body model) does not declare and that are not no-effect."""
        declared = _declared(model or self.body_model)
        names = list(data)
        if isinstance(data.get("extra_body"), dict) and "extra_body" in declared:
            names += list(data["extra_body"])  # a literal extra_body object is merged into the body
        for name in names:
            if name not in declared and name not in self.no_effect_fields:
                raise self.unknown_field(name, name in self.spec_fields)

    def model_name(self, body: Any) -> str:
        return str(body.model)


class BaseRenderer:
    """Defaults for a renderer: nothing after the last event, nothing to store once settled."""

    keepalive: bytes | None = KEEPALIVE

    def close(self, usage: Usage) -> list[bytes]:
        return []

    async def settled(self, status: str) -> None:
        return None


def _declared(model: type[BaseModel]) -> frozenset[str]:
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    if getattr(model, "merges_extra_body", False):
        names.add("extra_body")
    return frozenset(names)


def _named_input(exc: ServingError, family: Family) -> ServingError:
    if isinstance(exc, ContextLengthExceededError) and exc.param in ("messages", "prompt"):
        exc.param = family.input_param
        exc.message = exc.message.replace("your messages", f"your {family.input_param}").replace(
            "your prompt", f"your {family.input_param}"
        )
    return exc


async def handle(request: Request, family: Family) -> Response:
    """The whole HTTP life of one generation request."""
    try:
        key = await require_api_key(request)
        family.check_headers(request)
        body = family.validate(await read_json(request))
        settings: ServerSettings = request.app.state.settings
        ctx = Context(request, key, resolve_model(settings, family.model_name(body)), family.new_id())
        plan = await family.convert(ctx, body)
        started = await start(request, key, family.endpoint, ctx.model, plan.requests, ctx.request_id, plan.stream)
    except ServingError as exc:
        return family.error_response(request, _named_input(exc, family))
    renderer = plan.renderer(started)
    headers = started.call.response_headers(family.name)
    if plan.stream:
        return SSEResponse(stream_body(started, renderer, settings.keepalive_s, settings.max_request_s),
                           headers=headers)
    try:
        payload = await collect(request, started, renderer, settings.max_request_s)
    except ClientDisconnected:
        return Response(status_code=499)
    except ServingError as exc:
        return family.error_response(request, exc)
    return JSONResponse(payload, headers=headers)


def endpoint(family: Family) -> Callable[[Request], Awaitable[Response]]:
    """A FastAPI endpoint for the family (the app factory mounts it at `family.path`)."""

    async def generation_endpoint(request: Request) -> Response:
        return await handle(request, family)

    generation_endpoint.__name__ = f"create_{family.endpoint.replace('.', '_')}"
    return generation_endpoint
