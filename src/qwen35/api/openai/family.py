"""What the three OpenAI families share at the edge: the OpenAI error envelope and validation wording.

Owns `OpenAIFamily`, the base of ChatFamily, CompletionsFamily and ResponsesFamily. Imports api.edge and api.errors.
Invariant: every error of an OpenAI path is `{"error": {message, type, param, code}}` naming the parameter.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from qwen35.api.edge import BaseFamily
from qwen35.api.errors import openai_error_response, validation_error
from qwen35.serving.errors import InvalidRequestError, ServingError

# Request fields of the official APIs that only steer OpenAI's hosted service: accepted here with no effect.
HOSTED_ONLY = frozenset({
    "metadata", "store", "service_tier", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
    "safety_identifier", "moderation", "user",
})


class OpenAIFamily(BaseFamily):
    """OpenAI's error envelope and validation wording (shared by chat, completions and responses)."""

    name = "openai"

    def invalid_body(self, errors: list[Any], data: dict[str, Any]) -> ServingError:
        return validation_error(errors, data)

    def unknown_field(self, name: str, in_spec: bool) -> ServingError:
        if in_spec:
            return InvalidRequestError(f"'{name}' is not supported by this server.", param=name, code="unsupported_parameter")
        return InvalidRequestError(f"Unrecognized request argument supplied: {name}", param=name, code="unknown_parameter")

    def error_response(self, request: Request, exc: ServingError) -> Response:
        return openai_error_response(request, exc)
