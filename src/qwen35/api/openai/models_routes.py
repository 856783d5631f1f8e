"""`GET /v1/models` and `GET /v1/models/{id}`: the served model under its id and aliases.

Owns the model objects in both shapes the SDKs read from this one path: OpenAI (`object: list`) by default and
Anthropic (`has_more`, `lifecycle`, RFC 3339 `created_at`) when the request carries `anthropic-version`.
Imports api.settings, api.auth and serving errors. Invariant: an unknown id is a 404 `model_not_found`, and the
Anthropic list always says `has_more: false` (else its SDK paginates forever).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from qwen35.api.auth import require_api_key
from qwen35.api.edge import resolve_model
from qwen35.api.settings import ServerSettings

router = APIRouter(dependencies=[Depends(require_api_key)])


def openai_model(settings: ServerSettings) -> dict[str, Any]:
    return {"id": settings.model_id, "object": "model", "created": settings.created, "owned_by": settings.owned_by}


def anthropic_model(settings: ServerSettings) -> dict[str, Any]:
    created = datetime.fromtimestamp(settings.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, Any] = {
        "type": "model",
        "id": settings.model_id,
        "display_name": settings.display_name,
        "created_at": created,
        "lifecycle": "active",
        # spec-required (nullable) in Anthropic's ModelInfo; sent even when unknown
        "capabilities": None,
        "max_input_tokens": settings.max_model_len,
        "max_tokens": settings.max_model_len,
    }
    return out


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    settings: ServerSettings = request.app.state.settings
    if _anthropic(request):
        model = anthropic_model(settings)
        return {"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]}
    return {"object": "list", "data": [openai_model(settings)]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    settings: ServerSettings = request.app.state.settings
    resolve_model(settings, model_id)
    return anthropic_model(settings) if _anthropic(request) else openai_model(settings)
