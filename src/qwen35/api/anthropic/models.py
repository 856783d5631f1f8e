"""The Anthropic shape of `GET /v1/models` and `GET /v1/models/{id}` (chosen by the `anthropic-version` header).

Owns ModelInfo / list-page construction with `has_more`, `first_id`, `last_id` and `lifecycle` (the anthropic SDK
auto-paginates on `has_more`, and strict validation requires `lifecycle`). Imports this package's protocol types
only; the deployment facts come from any object shaped like `api.settings.ServerSettings`.
Invariant: `has_more` is always a boolean and paging by `after_id` / `before_id` terminates.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from fastapi import Request

from qwen35.api.anthropic.protocol_response import ModelInfo, ModelList
from qwen35.serving.errors import InvalidRequestError, NotFoundError


class ServedModel(Protocol):
    model_id: str
    display_name: str
    created: int
    max_model_len: int | None

    def resolve_model(self, name: object) -> str | None: ...


def wants_anthropic_shape(request: Request) -> bool:
    """The Anthropic SDK always sends `anthropic-version`; the OpenAI SDK never does."""
    return "anthropic-version" in request.headers


def model_info(settings: ServedModel) -> ModelInfo:
    created = dt.datetime.fromtimestamp(settings.created, tz=dt.timezone.utc)
    return ModelInfo(
        id=settings.model_id,
        display_name=settings.display_name,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        max_input_tokens=settings.max_model_len,
        max_tokens=settings.max_model_len,
    )


def retrieve_model(settings: ServedModel, name: str) -> ModelInfo:
    if settings.resolve_model(name) is None:
        raise NotFoundError(f"model: {name}")
    return model_info(settings)


def list_models(
    settings: ServedModel, limit: str | int | None = None, after_id: str | None = None, before_id: str | None = None
) -> ModelList:
    """One page of the (single-entry) catalogue; paging past the end gives an empty page with has_more false."""
    try:
        size = 20 if limit is None else int(limit)
    except (TypeError, ValueError):
        raise InvalidRequestError("limit: Input should be a valid integer", param="limit") from None
    if not 1 <= size <= 1000:
        raise InvalidRequestError("limit: Input should be between 1 and 1000", param="limit")
    catalogue = [model_info(settings)]
    ids = [m.id for m in catalogue]
    start, stop = 0, len(catalogue)
    if after_id is not None:
        start = ids.index(after_id) + 1 if after_id in ids else len(catalogue)
    if before_id is not None:
        stop = ids.index(before_id) if before_id in ids else 0
    page = catalogue[start:stop][:size]
    has_more = start + len(page) < stop
    return ModelList(
        data=page,
        has_more=has_more,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )
